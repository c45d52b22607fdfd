#!/usr/bin/env bash
# Gets a Prometheus 3 binary (the remote-write 2.0 receiver of the end-to-end
# tests): built once from the Go module proxy and cached outside the checkout,
# keyed by version:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/prometheus-<module version>/prometheus
#
# Prints the binary's path on stdout (and nothing else); progress and errors go
# to stderr. Idempotent: when the cached binary runs, it returns at once.
# Concurrent callers serialize on a lock. Module versions v0.3xx.y are
# Prometheus 3.x; `go install` takes it as it is. A cold build takes about 13
# minutes on 2 cores (a 141 MiB binary); Go's own caches are reused.
set -euo pipefail

PROM_MODULE_VERSION=v0.316.0
LOCK_TIMEOUT=3600

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/prometheus-$PROM_MODULE_VERSION"
BIN="$CACHE_DIR/prometheus"

say() { echo "prometheus3.sh: $*" >&2; }
die() { echo "prometheus3.sh: ERROR: $*" >&2; exit 1; }

usable() { [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; }

if usable; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH: Prometheus 3 is built from source with Go"
command -v flock >/dev/null 2>&1 || die "flock (util-linux) is not on PATH"

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
if ! flock -n 9; then
  say "another build is under way; waiting for it (at most ${LOCK_TIMEOUT}s)"
  flock -w "$LOCK_TIMEOUT" 9 || die "timed out waiting for the lock $CACHE_DIR/.lock"
fi
if usable; then
  echo "$BIN"
  exit 0
fi

WORK=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -modcacherw"
say "building github.com/prometheus/prometheus/cmd/prometheus@$PROM_MODULE_VERSION (about 13 minutes)"
GOBIN="$WORK" go install "github.com/prometheus/prometheus/cmd/prometheus@$PROM_MODULE_VERSION" >&2 ||
  die "go install failed"
mv "$WORK/prometheus" "$BIN"
usable || die "the built binary does not run"
say "built $BIN"
echo "$BIN"
