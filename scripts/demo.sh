#!/usr/bin/env bash
# Sets up, builds and runs drover on conf.d/demo.yaml: a stand-in for the
# kubelet writes container logs (CRI format, rotated and gzipped as the
# kubelet does) under a temporary folder, drover prints the records on stdout
# and serves its metrics on http://127.0.0.1:2020/metrics. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIG=$(bash scripts/setup.sh)
"$ZIG" build -Doptimize=ReleaseFast

DEMO=$(mktemp -d /tmp/drover-demo.XXXXXX)
export DEMO_LOG_DIR="$DEMO/logs" DEMO_DATA_DIR="$DEMO/data"
python3 tests/e2e/kubelet_writer.py --root "$DEMO_LOG_DIR" --rate 20 --duration 0 --max-size 65536 --max-files 3 &
writer=$!
cleanup() { kill "$writer" 2>/dev/null || true; wait "$writer" 2>/dev/null || true; rm -rf "$DEMO"; }
trap cleanup EXIT
sleep 1
echo "demo logs in $DEMO_LOG_DIR; metrics on http://${DROVER_HTTP_LISTEN:-127.0.0.1:2020}/metrics" >&2
./zig-out/bin/drover -c conf.d/demo.yaml
