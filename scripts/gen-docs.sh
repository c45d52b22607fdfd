#!/usr/bin/env bash
# Regenerates docs/plugins/<plugin>.md from the plugins' option tables.
set -euo pipefail
cd "$(dirname "$0")/.."
for p in $(./zig-out/bin/drover --describe all); do
  ./zig-out/bin/drover --describe "$p" > "docs/plugins/$p.md"
done
