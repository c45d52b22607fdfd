# Sourced by the scripts that build a test server once from the Go module
# proxy and cache it outside the checkout (coredns.sh, prometheus3.sh):
#
#   go_install_cached NAME PACKAGE@VERSION BIN MINUTES VERSION_FLAG
#
# installs PACKAGE@VERSION as BIN (a path under the cache) unless BIN already
# runs with VERSION_FLAG, and prints BIN's path on stdout (and nothing else;
# progress and errors go to stderr). Concurrent callers serialize on a lock
# beside BIN; Go's own caches are reused. MINUTES is what a cold build takes,
# for the progress line.

LOCK_TIMEOUT=${LOCK_TIMEOUT:-3600}

go_install_cached() {
  local name=$1 pkg=$2 bin=$3 minutes=$4 vflag=$5
  local dir work
  dir=$(dirname "$bin")
  say() { echo "$name: $*" >&2; }
  die() { echo "$name: ERROR: $*" >&2; exit 1; }
  usable() { [ -x "$bin" ] && "$bin" "$vflag" >/dev/null 2>&1; }

  if usable; then
    echo "$bin"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "go is not on PATH: $pkg is built from source with Go"
  command -v flock >/dev/null 2>&1 || die "flock (util-linux) is not on PATH"
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  if ! flock -n 9; then
    say "another build is under way; waiting for it (at most ${LOCK_TIMEOUT}s)"
    flock -w "$LOCK_TIMEOUT" 9 || die "timed out waiting for the lock $dir/.lock"
  fi
  if usable; then
    echo "$bin"
    return 0
  fi
  work=$(mktemp -d "$dir/build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -modcacherw"
  say "building $pkg (about $minutes minutes)"
  GOBIN="$work" go install "$pkg" >&2 || die "go install failed"
  mv "$work/$(basename "${pkg%@*}")" "$bin"
  usable || die "the built binary does not run"
  say "built $bin"
  echo "$bin"
}
