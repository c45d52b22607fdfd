#!/usr/bin/env bash
# Gets a Grafana Loki binary for the end-to-end tests: built once from the Go
# module proxy and cached outside the checkout, keyed by version:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/loki-<version>/loki
#
# Prints the binary's path on stdout (and nothing else); progress and errors go
# to stderr. Idempotent: when the cached binary runs, it returns at once.
# Concurrent callers serialize on a lock, so Loki is built at most once.
#
# Loki's go.mod carries replace directives, so `go install` refuses it; the
# build goes through a small wrapper module that requires Loki and repeats its
# replace and exclude lines (the local ./pkg/push one pinned to a published
# version). A cold build needs ~2.4 GB of modules and 5-10 minutes on 2 cores;
# Go's own caches ($HOME/go, ~/.cache/go-build) are reused.
set -euo pipefail

LOKI_VERSION=3.7.8
LOKI_MODULE=github.com/grafana/loki/v3
PUSH_MODULE=github.com/grafana/loki/pkg/push
PUSH_VERSION=v0.0.0-20250630054201-94c0ba7b0952
LOCK_TIMEOUT=3600

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/loki-$LOKI_VERSION"
BIN="$CACHE_DIR/loki"

say() { echo "loki.sh: $*" >&2; }
die() { echo "loki.sh: ERROR: $*" >&2; exit 1; }

usable() { [ -x "$BIN" ] && "$BIN" -version >/dev/null 2>&1; }

if usable; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 ||
  die "go is not on PATH: Loki $LOKI_VERSION is built from source with Go (1.26.5 or newer, as its go.mod asks)"
command -v flock >/dev/null 2>&1 || die "flock (util-linux) is not on PATH"

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
if ! flock -n 9; then
  say "another build of Loki $LOKI_VERSION is under way; waiting for it (at most ${LOCK_TIMEOUT}s)"
  flock -w "$LOCK_TIMEOUT" 9 || die "timed out waiting for the lock $CACHE_DIR/.lock"
fi
# The other caller may have finished it while we waited.
if usable; then
  echo "$BIN"
  exit 0
fi

WORK=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
TMP_BIN="$CACHE_DIR/.loki.tmp.$$"
cleanup() { rm -rf "$WORK" "$TMP_BIN"; }
trap cleanup EXIT
# Go marks module cache files read-only; the wrapper directory holds none, but
# be safe if GOFLAGS=-modcacherw is not set and someone points GOMODCACHE here.
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -modcacherw"

# Runs a go step; on failure, names the step (go's own output is already on stderr).
step() {
  local what=$1
  shift
  say "$what"
  if ! "$@" >&2; then
    die "$what failed (exit status $?): $*"
  fi
}

START=$(date +%s)
say "building Loki $LOKI_VERSION with $(go version) in $WORK"
cd "$WORK"
step "creating the wrapper module" go mod init drover-test/loki-build

say "downloading $LOKI_MODULE@v$LOKI_VERSION (the first time: ~2.4 GB of modules)"
if ! INFO=$(go mod download -json "$LOKI_MODULE@v$LOKI_VERSION" 2>&1); then
  echo "$INFO" >&2
  die "go mod download $LOKI_MODULE@v$LOKI_VERSION failed"
fi
GOMOD=$(printf '%s\n' "$INFO" | sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}[[:space:]]*$/\1/p')
[ -n "$GOMOD" ] && [ -f "$GOMOD" ] || { echo "$INFO" >&2; die "no GoMod file in the go mod download answer"; }

# Every replace and exclude of Loki's go.mod, single lines and ( ... ) blocks.
awk '
  /^[[:space:]]*(replace|exclude)[[:space:]]*\([[:space:]]*$/ { blk = 1; print; next }
  blk { print; if ($0 ~ /^[[:space:]]*\)/) blk = 0; next }
  /^[[:space:]]*(replace|exclude)[[:space:]]/ { print }
' "$GOMOD" >"$WORK/directives"
# The one pointing at the local ./pkg/push becomes a published version.
sed -i -E "s#^([[:space:]]*(replace[[:space:]]+)?)${PUSH_MODULE//./\\.}([[:space:]]+v[^[:space:]]+)?[[:space:]]*=>[[:space:]]*\./pkg/push/?[[:space:]]*\$#\1$PUSH_MODULE => $PUSH_MODULE $PUSH_VERSION#" \
  "$WORK/directives"
if grep -nE '=>[[:space:]]*\.{1,2}/' "$WORK/directives" >&2; then
  die "Loki's go.mod ($GOMOD) has local replace directives this script does not know (above)"
fi
grep -q "$PUSH_MODULE => $PUSH_MODULE $PUSH_VERSION" "$WORK/directives" ||
  say "note: Loki's go.mod has no ./pkg/push replace any more; nothing pinned"
say "copied $(grep -c '=>' "$WORK/directives" || true) replace lines and the exclude lines of $GOMOD"
{
  echo
  echo "require $LOKI_MODULE v$LOKI_VERSION"
  echo
  cat "$WORK/directives"
} >>go.mod

step "resolving dependencies (go get)" go get "$LOKI_MODULE/cmd/loki@v$LOKI_VERSION"

# Version information for `loki -version`, as Loki's Makefile sets it.
LDFLAGS="-s -w"
LDFLAGS="$LDFLAGS -X github.com/grafana/loki/v3/pkg/util/build.Version=$LOKI_VERSION"
LDFLAGS="$LDFLAGS -X github.com/grafana/loki/v3/pkg/util/build.Branch=release-${LOKI_VERSION%.*}.x"
LDFLAGS="$LDFLAGS -X github.com/grafana/loki/v3/pkg/util/build.Revision=v$LOKI_VERSION"
LDFLAGS="$LDFLAGS -X github.com/grafana/loki/v3/pkg/util/build.BuildUser=drover-test"
LDFLAGS="$LDFLAGS -X github.com/grafana/loki/v3/pkg/util/build.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
step "compiling Loki (the first time: 5-10 minutes on 2 cores)" \
  go build -trimpath -ldflags "$LDFLAGS" -o "$TMP_BIN" "$LOKI_MODULE/cmd/loki"

"$TMP_BIN" -version >&2 || die "the freshly built $TMP_BIN does not run"
mv -f "$TMP_BIN" "$BIN"
say "built $BIN ($(du -h "$BIN" | cut -f1)) in $(($(date +%s) - START))s"
echo "$BIN"
