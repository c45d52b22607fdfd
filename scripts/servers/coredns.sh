#!/usr/bin/env bash
# Gets a CoreDNS binary (the cluster DNS server of the dns_probe end-to-end
# tests): built once from the Go module proxy and cached outside the checkout,
# keyed by version:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/coredns-<version>/coredns
#
# Prints the binary's path on stdout (and nothing else); progress and errors go
# to stderr. Idempotent: when the cached binary runs, it returns at once.
# Concurrent callers serialize on a lock. A cold build takes about 10 minutes
# on 2 cores (a 103 MiB binary); Go's own caches are reused.
set -euo pipefail

COREDNS_VERSION=v1.12.4
LOCK_TIMEOUT=3600

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/coredns-$COREDNS_VERSION"
BIN="$CACHE_DIR/coredns"

say() { echo "coredns.sh: $*" >&2; }
die() { echo "coredns.sh: ERROR: $*" >&2; exit 1; }

usable() { [ -x "$BIN" ] && "$BIN" -version >/dev/null 2>&1; }

if usable; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH: CoreDNS is built from source with Go"
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
say "building github.com/coredns/coredns@$COREDNS_VERSION (about 10 minutes)"
GOBIN="$WORK" go install "github.com/coredns/coredns@$COREDNS_VERSION" >&2 ||
  die "go install failed"
mv "$WORK/coredns" "$BIN"
usable || die "the built binary does not run"
say "built $BIN"
echo "$BIN"
