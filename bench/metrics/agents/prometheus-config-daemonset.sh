#!/bin/sh
# Shared by the peers' DaemonSet adapters: writes to stdout the Prometheus-format scrape
# config of the DaemonSet-like scenario, the same discovery and relabeling as drover's,
# with the node-local pod watch a DaemonSet's Prometheus or vmagent is given by hand (a
# field selector spec.nodeName=<node>).
. "$(dirname "$0")/kube-sd.sh"
echo "global:"
echo "  scrape_interval: ${BENCH_INTERVAL}s"
echo "  scrape_timeout: ${BENCH_TIMEOUT}s"
echo "scrape_configs:"
echo "  - job_name: bench"
echo "    kubernetes_sd_configs:"
echo "      - role: pod"
echo "        api_server: \"$KUBE_API\""
echo "        bearer_token_file: \"$KUBE_TOKEN_FILE\""
echo "        tls_config: { ca_file: \"$KUBE_CA\" }"
echo "        selectors: [{ role: pod, field: \"spec.nodeName=$KUBE_NODE\" }]"
printf '%s\n' "$KUBE_RELABEL"
