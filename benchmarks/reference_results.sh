#!/usr/bin/env bash
# Every accuracy figure of the shipped reference model, from the shipped file, in one script.
#
#   DSEDGE_ISIC2017=/data/isic2017 bash benchmarks/reference_results.sh [RUN_FOLDER]
#
# With RUN_FOLDER (a finished `dsedge train --config configs/reference.toml` run), its EMA
# `last` checkpoint is first written as the shipped weights (dsedge/models/weights/).
# Then: eval on ISIC 2017 val (bootstrap 95 % intervals), a bundle with the cam output,
# temperature + melanoma operating point, INT8 under the default decision budget.
# Outputs: benchmarks/results/reference/ and bundles/reference/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
D="${DSEDGE_ISIC2017:?set DSEDGE_ISIC2017 to the ISIC 2017 folder}"
OUT=benchmarks/results/reference
BUNDLE=bundles/reference
DSEDGE="${DSEDGE:-.venv/bin/dsedge}"
PY="${PY:-.venv/bin/python}"
mkdir -p "$OUT"

if [ $# -ge 1 ]; then
  "$PY" - "$1" <<'PY'
import sys
from dsedge.models.weights import ship_checkpoint
print("shipped:", ship_checkpoint(f"{sys.argv[1]}/last"))
PY
fi

"$DSEDGE" eval isic2017 --data "$D" --split val --out "$OUT/eval-val"
"$DSEDGE" export isic2017 --out "$BUNDLE" --data "$D" --cam --force
"$DSEDGE" risk "$BUNDLE" --data "$D" --split val
"$DSEDGE" eval isic2017 --data "$D" --split val --bundle "$BUNDLE" --out "$OUT/eval-val-operating-point"
"$DSEDGE" calibrate "$BUNDLE" --data "$D" 2>&1 | tee "$OUT/calibrate.log"
cp "$BUNDLE/dsedge.json" "$OUT/bundle-manifest.json"
cp "$BUNDLE/MODEL_CARD.md" "$OUT/bundle-MODEL_CARD.md"
for f in reliability.png roc.png int8_sensitivity.md; do
  [ -f "$BUNDLE/$f" ] && cp "$BUNDLE/$f" "$OUT/$f"
done
echo "done: $OUT"
