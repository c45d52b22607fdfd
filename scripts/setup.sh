#!/usr/bin/env bash
# Installs everything drover needs to build and test: Debian -dev packages and
# Zig (pinned, from PyPI). Idempotent: when everything is present it only checks.
set -euo pipefail

ZIG_VERSION=0.17.1
DEB_PACKAGES=(
  pkg-config libuv1-dev libcurl4-openssl-dev librdkafka-dev libzstd-dev
  libprotobuf-c-dev protobuf-c-compiler libsnappy-dev libyaml-dev libpcre2-dev
  zlib1g-dev libdeflate-dev libssl-dev libclang-rt-22-dev time clang-format
  # servers the end-to-end tests scrape and write to (their services are not started)
  prometheus-node-exporter prometheus victoria-metrics
  # Kafka for the kafka output's tests (its jars come from Maven Central,
  # scripts/servers/kafka.sh) and kcat to read the topics back
  openjdk-17-jre-headless maven kcat
  # the container image, built without a container daemon (scripts/build-image.sh)
  umoci skopeo
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Zig lives in the PyPI package; expose it as `zig` in a stable place.
ZIG_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/drover-tools"
ZIG_LINK="$ZIG_HOME/bin/zig"
if ! { [ -x "$ZIG_LINK" ] && [ "$("$ZIG_LINK" version 2>/dev/null)" = "$ZIG_VERSION" ]; }; then
  echo "setup: installing ziglang==$ZIG_VERSION" >&2
  python3 -m pip install -q --disable-pip-version-check "ziglang==$ZIG_VERSION"
  zdir=$(python3 -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')
  mkdir -p "$ZIG_HOME/bin"
  ln -sf "$zdir/zig" "$ZIG_LINK"
fi

# Python test dependencies.
# msgpack and zstandard decode the http output's bodies in tests/e2e; PyYAML
# reads the Helm chart's manifests and kubernetes-validate checks them offline
# against the Kubernetes API schemas it ships (tests/e2e/test_packaging.py).
python3 -c 'import pytest, msgpack, zstandard, yaml, kubernetes_validate' 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check pytest msgpack zstandard pyyaml kubernetes-validate==1.37.0

echo "$ZIG_LINK"
