#!/bin/bash
# Scenario a-daemonset: scenario (a) of the shared metrics harness (20 targets, ~125k active
# series, 5 s interval) with the targets found as a DaemonSet's agent finds them: through
# kubernetes_sd_configs, role pod, this node's pods only, from a real kube-apiserver + etcd
# (kube-cluster.py) that runs outside the agents' measured process tree for the whole
# session. The API server holds every target twice, as pods of this node and of another one,
# so an agent that is not node-local scrapes twice as much and shows it.
# Usage: bench/metrics/daemonset.sh OUTDIR RUNS NAME=CMD [NAME=CMD ...]   (interleaved)
#   e.g. drover=bench/metrics/agents/drover-daemonset.sh
#        "vmagent=bench/metrics/agents/peer-daemonset.sh ../shared/bench/metrics/agents/vmagent.sh"
# BENCH_HARNESS: the shared harness (default ../shared/bench/metrics beside the checkout).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
harness=${BENCH_HARNESS:-$repo/../shared/bench/metrics}
out=$1; runs=$2; shift 2
[ $# -gt 0 ] || { echo "usage: daemonset.sh OUTDIR RUNS NAME=CMD..." >&2; exit 2; }
mkdir -p "$out"

kube_dir=$(mktemp -d /tmp/bench-kube.XXXXXX)
python3 "$repo/bench/metrics/kube-cluster.py" serve "$kube_dir" > "$kube_dir/serve.log" 2>&1 &
kube_pid=$!
stop_kube() {
  kill "$kube_pid" 2>/dev/null || true
  wait "$kube_pid" 2>/dev/null || true
  rm -rf "$kube_dir"
}
trap stop_kube EXIT
for _ in $(seq 1 300); do
  [ -s "$kube_dir/api_url" ] && break
  kill -0 "$kube_pid" 2>/dev/null || { cat "$kube_dir/serve.log" >&2; exit 1; }
  sleep 1
done
[ -s "$kube_dir/api_url" ] || { echo "daemonset.sh: the API server is not up after 300 s" >&2; exit 1; }
export BENCH_KUBE_DIR=$kube_dir

for i in $(seq 1 "$runs"); do
  for spec in "$@"; do
    name=${spec%%=*}; cmd=${spec#*=}
    python3 "$harness/bench.py" --name "$name" --cmd "$cmd" --label a-daemonset \
      --spec cadvisor:17,node-k8s:1,coredns:1,prometheus:1 --pods 100 --dynamic 0.5 \
      --interval 5 --warmup 60 --window 60 --out "$out" ${BENCH_EXTRA:-} | tail -1
  done
done
