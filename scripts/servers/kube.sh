#!/usr/bin/env bash
# Gets kube-apiserver 1.34 and etcd 3.6 for the end-to-end tests: built once
# from the Go module proxy and cached outside the checkout, keyed by version:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/kube-<version>/{kube-apiserver,etcd}
#
# Prints that directory on stdout (and nothing else); progress and errors go
# to stderr. Idempotent: when both cached binaries run, it returns at once.
# Concurrent callers serialize on a lock, so they are built at most once.
#
# k8s.io/kubernetes cannot be required as it is: its go.mod points every
# staging module (k8s.io/api, k8s.io/apiserver, ...) at ./staging. The build
# goes through a small wrapper module that requires it and replaces each
# staging module with its published v0.<minor>.<patch> twin, with a `tool`
# block naming kube-apiserver and etcd (which Kubernetes pins: 3.6.x) so that
# `go mod tidy` keeps both. A cold build needs ~700 MB of modules and about
# 7 CPU-minutes; Go's own caches ($HOME/go, ~/.cache/go-build) are reused.
set -euo pipefail

KUBE_VERSION=1.34.4
KUBE_MODULE=k8s.io/kubernetes
ETCD_MAIN=go.etcd.io/etcd/server/v3
LOCK_TIMEOUT=3600

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/kube-$KUBE_VERSION"
APISERVER="$CACHE_DIR/kube-apiserver"
ETCD="$CACHE_DIR/etcd"

say() { echo "kube.sh: $*" >&2; }
die() { echo "kube.sh: ERROR: $*" >&2; exit 1; }

usable() {
  [ -x "$APISERVER" ] && [ -x "$ETCD" ] &&
    "$APISERVER" --version >/dev/null 2>&1 && "$ETCD" --version >/dev/null 2>&1
}

if usable; then
  echo "$CACHE_DIR"
  exit 0
fi

command -v go >/dev/null 2>&1 ||
  die "go is not on PATH: kube-apiserver $KUBE_VERSION and etcd are built from source with Go"
command -v flock >/dev/null 2>&1 || die "flock (util-linux) is not on PATH"

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
if ! flock -n 9; then
  say "another build is under way; waiting for it (at most ${LOCK_TIMEOUT}s)"
  flock -w "$LOCK_TIMEOUT" 9 || die "timed out waiting for the lock $CACHE_DIR/.lock"
fi
if usable; then
  echo "$CACHE_DIR"
  exit 0
fi

WORK=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
cleanup() { rm -rf "$WORK" "$CACHE_DIR"/.*.tmp.$$; }
trap cleanup EXIT
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -modcacherw"

step() {
  local what=$1
  shift
  say "$what"
  if ! "$@" >&2; then
    die "$what failed (exit status $?): $*"
  fi
}

START=$(date +%s)
say "building kube-apiserver $KUBE_VERSION and etcd with $(go version) in $WORK"
cd "$WORK"
step "creating the wrapper module" go mod init drover-test/kube-build

say "downloading $KUBE_MODULE@v$KUBE_VERSION"
if ! INFO=$(go mod download -json "$KUBE_MODULE@v$KUBE_VERSION" 2>&1); then
  echo "$INFO" >&2
  die "go mod download $KUBE_MODULE@v$KUBE_VERSION failed"
fi
GOMOD=$(printf '%s\n' "$INFO" | sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}[[:space:]]*$/\1/p')
[ -n "$GOMOD" ] && [ -f "$GOMOD" ] || { echo "$INFO" >&2; die "no GoMod file in the go mod download answer"; }

# Every "k8s.io/X => ./staging/src/k8s.io/X" becomes "k8s.io/X => k8s.io/X v0.<minor>.<patch>".
STAGING_VERSION="v0.${KUBE_VERSION#*.}"
grep -oE '^[[:space:]]*k8s\.io/[A-Za-z0-9._/-]+[[:space:]]*=>[[:space:]]*\./staging/src/k8s\.io/[A-Za-z0-9._/-]+' "$GOMOD" |
  awk -v v="$STAGING_VERSION" '{ print "replace " $1 " => " $1 " " v }' >"$WORK/replaces"
[ -s "$WORK/replaces" ] || die "no staging replace lines found in $GOMOD"
say "replacing $(wc -l <"$WORK/replaces") staging modules with their $STAGING_VERSION releases"
{
  echo
  echo "require $KUBE_MODULE v$KUBE_VERSION"
  echo
  cat "$WORK/replaces"
  echo
  echo "tool ("
  echo "    $KUBE_MODULE/cmd/kube-apiserver"
  echo "    $ETCD_MAIN"
  echo ")"
} >>go.mod

step "resolving dependencies (go mod tidy; the first time: ~700 MB of modules)" go mod tidy

ETCD_VERSION=$(go list -m -f '{{.Version}}' "$ETCD_MAIN")
MINOR=${KUBE_VERSION#*.}
MINOR=${MINOR%%.*}
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS="$LDFLAGS -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR"
  LDFLAGS="$LDFLAGS -X $pkg.gitTreeState=clean"
done
step "compiling kube-apiserver (the first time: several minutes on 2 cores)" \
  go build -trimpath -ldflags "$LDFLAGS" -o "$CACHE_DIR/.kube-apiserver.tmp.$$" "$KUBE_MODULE/cmd/kube-apiserver"
step "compiling etcd $ETCD_VERSION" \
  go build -trimpath -ldflags "-s -w" -o "$CACHE_DIR/.etcd.tmp.$$" "$ETCD_MAIN"

"$CACHE_DIR/.kube-apiserver.tmp.$$" --version >&2 || die "the freshly built kube-apiserver does not run"
"$CACHE_DIR/.etcd.tmp.$$" --version >&2 || die "the freshly built etcd does not run"
mv -f "$CACHE_DIR/.kube-apiserver.tmp.$$" "$APISERVER"
mv -f "$CACHE_DIR/.etcd.tmp.$$" "$ETCD"
say "built $APISERVER and $ETCD in $(($(date +%s) - START))s"
echo "$CACHE_DIR"
