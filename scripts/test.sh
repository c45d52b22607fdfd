#!/usr/bin/env bash
# Sets up and runs every test: the C unit tests (plain and under
# AddressSanitizer + UndefinedBehaviorSanitizer), a short end-to-end test
# under the sanitizers, the docs check, and the end-to-end suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIG=$(bash scripts/setup.sh)
export DROVER_FIXTURES="${DROVER_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"

echo "== format check"
clang-format --dry-run -Werror include/drover/*.h src/*.[ch] plugins/*/*.[ch] plugins/*/*/*.[ch] tests/unit/*.[ch]

echo "== build"
"$ZIG" build

echo "== unit tests"
"$ZIG" build test

echo "== unit tests under ASan + UBSan"
"$ZIG" build -Dsanitize=true -p zig-out-asan
"$ZIG" build test -Dsanitize=true -p zig-out-asan
# The sanitizer build must really catch a memory error.
if ./zig-out-asan/bin/drover-unit --sanitizer-selftest > /tmp/drover-asan-selftest.log 2>&1; then
  echo "sanitizer self-test: AddressSanitizer did not fire" >&2
  exit 1
fi
grep -q "heap-buffer-overflow" /tmp/drover-asan-selftest.log || {
  echo "sanitizer self-test: no heap-buffer-overflow report" >&2; cat /tmp/drover-asan-selftest.log >&2; exit 1; }
echo "sanitizer self-test: AddressSanitizer caught the deliberate overflow"

echo "== docs are up to date"
for p in $(./zig-out/bin/drover --describe all); do
  if ! ./zig-out/bin/drover --describe "$p" | diff -u "docs/plugins/$p.md" - ; then
    echo "docs/plugins/$p.md is out of date: run scripts/gen-docs.sh" >&2
    exit 1
  fi
done

echo "== the benchmark sink's own tests"
python3 -m pytest -q -p no:cacheprovider bench/logs/harness/test_sink.py

echo "== example configurations are valid"
for f in conf.d/*.yaml conf.d/examples/*.yaml; do
  ./zig-out/bin/drover --check-config -c "$f"
done

echo "== the container image"
bash scripts/build-image.sh zig-out-image
export DROVER_IMAGE_DIR="$PWD/zig-out-image"

echo "== end-to-end under ASan + UBSan (short)"
DROVER_BIN="$PWD/zig-out-asan/bin/drover" ASAN_OPTIONS=detect_leaks=1 \
  python3 -m pytest -q -x tests/e2e -m sanitizer

echo "== end-to-end"
# Real servers the end-to-end tests run against, built once and cached
# outside the checkout (scripts/servers/).
LOKI_BIN=$(bash scripts/servers/loki.sh)
KUBE_BIN_DIR=$(bash scripts/servers/kube.sh)
PROMETHEUS3_BIN=$(bash scripts/servers/prometheus3.sh)
COREDNS_BIN=$(bash scripts/servers/coredns.sh)
KAFKA_LIBS=$(bash scripts/servers/kafka.sh)
KAFKA39_LIBS=$(bash scripts/servers/kafka.sh 3.9.1)
# Grafana's dashboard linter, for tests/e2e/test_dashboards.py (dashboards/)
DASHBOARD_LINTER_BIN=$(bash scripts/servers/dashboard-linter.sh)
# helm and kube-score check the chart in packaging/helm (test_packaging.py)
HELM_BIN=$(bash scripts/servers/helm.sh)
KUBE_SCORE_BIN=$(bash scripts/servers/kube-score.sh)
export LOKI_BIN KUBE_BIN_DIR PROMETHEUS3_BIN COREDNS_BIN KAFKA_LIBS KAFKA39_LIBS \
  DASHBOARD_LINTER_BIN HELM_BIN KUBE_SCORE_BIN

echo "== packaging/manifests are up to date"
bash scripts/gen-manifests.sh --check

python3 -m pytest -q tests/e2e
