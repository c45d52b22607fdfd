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

# shellcheck source=scripts/servers/go_install.sh
. "$(dirname "$0")/go_install.sh"
go_install_cached coredns.sh "github.com/coredns/coredns@$COREDNS_VERSION" \
  "${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/coredns-$COREDNS_VERSION/coredns" 10 -version
