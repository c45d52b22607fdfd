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

# shellcheck source=scripts/servers/go_install.sh
. "$(dirname "$0")/go_install.sh"
go_install_cached prometheus3.sh \
  "github.com/prometheus/prometheus/cmd/prometheus@$PROM_MODULE_VERSION" \
  "${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/prometheus-$PROM_MODULE_VERSION/prometheus" 13 \
  --version
