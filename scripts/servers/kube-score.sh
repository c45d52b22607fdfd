#!/usr/bin/env bash
# Gets kube-score (static analysis of the manifests the Helm chart renders,
# for the packaging tests): built once from the Go module proxy and cached
# outside the checkout, keyed by version:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/kube-score-<version>/kube-score
#
# Prints the binary's path on stdout (and nothing else); progress and errors go
# to stderr. Idempotent: when the cached binary runs, it returns at once.
# Concurrent callers serialize on a lock. A cold build takes about a minute;
# Go's own caches are reused.
set -euo pipefail

KUBE_SCORE_VERSION=v1.20.0

# shellcheck source=scripts/servers/go_install.sh
. "$(dirname "$0")/go_install.sh"
go_install_cached kube-score.sh "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION" \
  "${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/kube-score-$KUBE_SCORE_VERSION/kube-score" 1 version
