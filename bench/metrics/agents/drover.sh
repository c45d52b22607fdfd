#!/bin/sh
# drover's adapter for the metrics harness in ../shared/bench/metrics (see bench/README.md):
# one prometheus_scrape job over the harness's file_sd targets (each group carries its
# job and __metrics_path__), one remote_write output to the harness's receiver.
#   DROVER              the binary (default: drover on PATH)
#   DROVER_RW_MESSAGE   prometheus.WriteRequest (1.0, default) or io.prometheus.write.v2.Request
#   DROVER_RW_EXTRA     more remote_write option lines, e.g. "max_samples_per_send: 5000"
#   DROVER_AGENT_EXTRA  more agent option lines, e.g. "node_name: bench-node-a"
#   DROVER_JOB          the job's discovery and relabeling in place of the file_sd line
#                       (YAML at the job's indentation: see drover-daemonset.sh)
set -eu
ms() { awk -v s="$1" 'BEGIN { printf "%dms", s * 1000 + 0.5 }'; }
cfg="$BENCH_WORKDIR/drover.yaml"
{
  echo "agent:"
  echo "  data_dir: $BENCH_WORKDIR/data"
  echo "  http: { listen: \"127.0.0.1:$BENCH_AGENT_PORT\" }"
  echo "  log_level: warn"
  if [ -n "${DROVER_AGENT_EXTRA:-}" ]; then
    printf '%s\n' "$DROVER_AGENT_EXTRA" | sed 's/^/  /'
  fi
  echo "inputs:"
  echo "  - name: scrape"
  echo "    type: prometheus_scrape"
  echo "    scrape_interval: $(ms "$BENCH_INTERVAL")"
  echo "    scrape_timeout: $(ms "$BENCH_TIMEOUT")"
  echo "    scrape_configs:"
  echo "      - job_name: bench"
  if [ -n "${DROVER_JOB:-}" ]; then
    printf '%s\n' "$DROVER_JOB"
  else
    echo "        file_sd_configs: [{files: [\"$BENCH_TARGETS_SD\"]}]"
  fi
  echo "outputs:"
  echo "  - name: rw"
  echo "    type: remote_write"
  echo "    match: scrape"
  echo "    url: \"$BENCH_RW_URL\""
  echo "    protobuf_message: ${DROVER_RW_MESSAGE:-prometheus.WriteRequest}"
  echo "    queue_max_bytes: 64MiB"
  if [ -n "${DROVER_RW_EXTRA:-}" ]; then
    printf '%s\n' "$DROVER_RW_EXTRA" | sed 's/^/    /'
  fi
} > "$cfg"
exec "${DROVER:-drover}" -c "$cfg"
