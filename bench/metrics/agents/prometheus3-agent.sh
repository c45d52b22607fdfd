#!/bin/sh
# Prometheus 3 in agent mode (PROMETHEUS3_BIN, built by scripts/servers/prometheus3.sh), for
# the scenarios the Debian Prometheus 2.42 of the shared harness cannot run: Debian builds it
# without Kubernetes service discovery. The shared prometheus-agent.sh with `--agent` in place
# of 2.x's `--enable-feature=agent`; remote write 1.0 (Prometheus 3's default), the same
# scrape config and queue defaults.
set -eu
: "${PROMETHEUS3_BIN:?PROMETHEUS3_BIN: the Prometheus 3 binary}"
cfg="$BENCH_WORKDIR/prometheus-agent.yml"
cat "$BENCH_SCRAPE_CONFIG" > "$cfg"
{
  echo "remote_write:"
  echo "  - url: $BENCH_RW_URL"
} >> "$cfg"
exec "$PROMETHEUS3_BIN" --agent \
  --config.file="$cfg" \
  --storage.agent.path="$BENCH_WORKDIR/agent-wal" \
  --web.listen-address="127.0.0.1:$BENCH_AGENT_PORT"
