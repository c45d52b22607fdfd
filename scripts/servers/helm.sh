#!/usr/bin/env bash
# Gets Helm 3 (for the packaging tests: helm lint and helm template of the
# chart in packaging/helm/drover): built once from the Go module proxy and
# cached outside the checkout, keyed by version:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/helm-<version>/helm
#
# Prints the binary's path on stdout (and nothing else); progress and errors go
# to stderr. Idempotent: when the cached binary runs, it returns at once.
# Concurrent callers serialize on a lock. A cold build takes about 4 minutes
# on 2 cores; Go's own caches are reused.
set -euo pipefail

HELM_VERSION=v3.22.0

# shellcheck source=scripts/servers/go_install.sh
. "$(dirname "$0")/go_install.sh"
go_install_cached helm.sh "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
  "${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/helm-$HELM_VERSION/helm" 4 version
