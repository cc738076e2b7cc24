#!/usr/bin/env bash
# Regenerates docs/report.png, the README's picture of the demo's report, from the current code: runs the demo
# at the quick profile (its models are cached under runs/cache, so a rerun only evaluates), renders its report
# and has headless Chromium screenshot the first 2400 pixels of it (1200 wide).
#   bash docs/report_png.sh                       # from the repository root, with robustlab on PATH
#   ROBUSTLAB="python -m robustlab" OUT=/tmp/demo bash docs/report_png.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROBUSTLAB=${ROBUSTLAB:-robustlab}
OUT=${OUT:-runs/demo}
$ROBUSTLAB demo --profile quick --out "$OUT"
$ROBUSTLAB report "$OUT" --out "$OUT/report.html" --title "robustlab demo: standard vs PGD-trained small_cnn" \
  --check --screenshot docs/report.png
