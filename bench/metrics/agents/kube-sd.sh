#!/bin/sh
# Shared by the *-daemonset.sh adapters of the DaemonSet-like scenario (bench/README.md):
# reads the API server that `kube-cluster.py serve $BENCH_KUBE_DIR` runs, and creates the
# harness's targets there as pods (once per session: existing pods are kept), so that the
# agent finds them through kubernetes_sd_configs (role pod) as a DaemonSet's agent does.
# Sets KUBE_API, KUBE_CA, KUBE_TOKEN_FILE and KUBE_NODE.
: "${BENCH_KUBE_DIR:?BENCH_KUBE_DIR: the directory of kube-cluster.py serve}"
here=$(cd "$(dirname "$0")/.." && pwd)
[ -s "$BENCH_KUBE_DIR/api_url" ] || { echo "kube-sd.sh: no API server in $BENCH_KUBE_DIR" >&2; exit 1; }
KUBE_API=$(cat "$BENCH_KUBE_DIR/api_url")
KUBE_CA="$BENCH_KUBE_DIR/ca.crt"
KUBE_TOKEN_FILE="$BENCH_KUBE_DIR/token"
KUBE_NODE=$(cat "$BENCH_KUBE_DIR/node")
python3 "$here/kube-cluster.py" pods "$BENCH_KUBE_DIR" "$BENCH_TARGETS_SD" >&2

# The relabeling every agent gets, Prometheus' YAML at 4 spaces: the annotated pods, the job
# from a pod label, the path from an annotation; instance stays the address (127.0.0.1:port),
# so the series are those of the static scenario (a).
KUBE_RELABEL='    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        regex: "true"
        action: keep
      - source_labels: [__meta_kubernetes_pod_label_bench_job]
        target_label: job
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        target_label: __metrics_path__'
