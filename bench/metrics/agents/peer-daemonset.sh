#!/bin/sh
# A peer in the DaemonSet-like scenario: runs the peer's own adapter of the shared harness
# (its flags unchanged) on the kubernetes_sd scrape config of prometheus-config-daemonset.sh.
#   peer-daemonset.sh ADAPTER     e.g. $BENCH_HERE/agents/vmagent.sh
set -eu
[ $# -eq 1 ] || { echo "usage: peer-daemonset.sh ADAPTER" >&2; exit 2; }
cfg="$BENCH_WORKDIR/scrape-daemonset.yml"
sh "$(dirname "$0")/prometheus-config-daemonset.sh" > "$cfg"
BENCH_SCRAPE_CONFIG=$cfg exec sh "$1"
