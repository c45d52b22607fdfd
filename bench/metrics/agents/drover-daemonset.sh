#!/bin/sh
# drover in the DaemonSet-like scenario: drover.sh with the harness's targets found through
# kubernetes_sd_configs (role pod, node-local: agent.node_name makes the watch
# spec.nodeName=<node>) in place of file_sd. DROVER: the binary.
set -eu
. "$(dirname "$0")/kube-sd.sh"
DROVER_AGENT_EXTRA="node_name: $KUBE_NODE"
DROVER_JOB=$(
  echo "        kubernetes_sd_configs:"
  echo "          - role: pod"
  echo "            api_server: \"$KUBE_API\""
  echo "            bearer_token_file: \"$KUBE_TOKEN_FILE\""
  echo "            tls_config: { ca_file: \"$KUBE_CA\" }"
  printf '%s\n' "$KUBE_RELABEL" | sed 's/^/    /'
)
export DROVER_AGENT_EXTRA DROVER_JOB
exec sh "$(dirname "$0")/drover.sh"
