#!/usr/bin/env bash
# Gets Grafana's dashboard linter (github.com/grafana/dashboard-linter), which
# the dashboards under dashboards/ are checked with: built once from the Go
# module proxy and cached outside the checkout, keyed by version:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/dashboard-linter-<version>/dashboard-linter
#
# Prints the binary's path on stdout (and nothing else); progress and errors go
# to stderr. Idempotent: when the cached binary runs, it returns at once.
# Concurrent callers serialize on a lock. The linter has no tagged versions:
# a small wrapper module imports it from a tools.go, pinned to a
# pseudo-version, and GONOSUMDB lets Go fetch it without the checksum database
# (which does not know it; go.sum still pins what was fetched). A cold build
# takes about 2 minutes on 2 cores; Go's own caches are reused.
#
# Run it as `dashboard-linter lint --strict FILE` (without --strict it exits 0
# on errors).
set -euo pipefail

LINTER_MODULE=github.com/grafana/dashboard-linter
LINTER_VERSION=v0.0.0-20241224134444-1765d94aec4a
LOCK_TIMEOUT=${LOCK_TIMEOUT:-3600}

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/dashboard-linter-$LINTER_VERSION"
BIN="$CACHE_DIR/dashboard-linter"

say() { echo "dashboard-linter.sh: $*" >&2; }
die() { echo "dashboard-linter.sh: ERROR: $*" >&2; exit 1; }

usable() { [ -x "$BIN" ] && "$BIN" --help >/dev/null 2>&1; }

if usable; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH: the linter is built from source with Go"
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
TMP_BIN="$CACHE_DIR/.dashboard-linter.tmp.$$"
cleanup() { rm -rf "$WORK" "$TMP_BIN"; }
trap cleanup EXIT
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -modcacherw"
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}$LINTER_MODULE"

step() {
  local what=$1
  shift
  say "$what"
  if ! "$@" >&2; then
    die "$what failed (exit status $?): $*"
  fi
}

START=$(date +%s)
cd "$WORK"
step "creating the wrapper module" go mod init drover-test/dashboard-linter-build
cat >tools.go <<EOF
//go:build tools

package tools

import _ "$LINTER_MODULE"
EOF
step "requiring $LINTER_MODULE@$LINTER_VERSION" go get "$LINTER_MODULE@$LINTER_VERSION"
step "resolving its dependencies" go mod tidy
step "compiling the linter" go build -trimpath -ldflags "-s -w" -o "$TMP_BIN" "$LINTER_MODULE"

"$TMP_BIN" --help >/dev/null 2>&1 || die "the freshly built $TMP_BIN does not run"
mv -f "$TMP_BIN" "$BIN"
say "built $BIN in $(($(date +%s) - START))s"
echo "$BIN"
