#!/usr/bin/env bash
# Issue 26's regression check: fixed tiny runs through every route that fits an operating point (train-only ->
# refit -> ensemble, cv, calibrate, ensemble of runs), then one sha256 per metrics/calibration file. Run it on the
# tree before and after a refactor and compare the listings: a refactor that changes no behaviour prints the same.
#   usage: experiments/refactor_regression.sh OUT_DIR [SRC_DIR]
# SRC_DIR (default: this checkout's src) lets one run an older tree through the same venv (a git worktree).
set -euo pipefail
OUT=${1:?out dir}; SRC=${2:-$(cd "$(dirname "$0")/.." && pwd)/src}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"; DATA=${DATA:-$(cd "$ROOT/.." && pwd)/shared/data}
export PYTHONPATH="$SRC" OMP_NUM_THREADS=1 PYTHONHASHSEED=0 CUBLAS_WORKSPACE_CONFIG=:4096:8
rm -rf "$OUT"; mkdir -p "$OUT"
TINY=(data.max_samples=600 data.image_size=24 model.backbone=tiny-resnet model.pretrained=none train.epochs=2
      train.batch_size=32 train.progress=false train.trainer.num_workers=0 eval.gradcam_images=0 data.canonical=none)
cli() { "$PY" -c "import sys; from lesionlab.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }
cli train --config "$ROOT/configs/default.yaml" --data-root "$DATA" --output-dir "$OUT/train" "${TINY[@]}" name=reg
cli cv --config "$ROOT/configs/default.yaml" --data-root "$DATA" --output-dir "$OUT/cv" --folds 2 "${TINY[@]}" \
    train.refit=false name=regcv
only=$(ls -d "$OUT"/train/reg-2*  | grep -v -e refit -e ensemble | head -1)
cp -r "$only" "$OUT/calibrated"
cli calibrate "$OUT/calibrated" --data-root "$DATA" --sensitivity 0.85
"$PY" "$ROOT/experiments/regression_hashes.py" "$OUT" | sort -k2 | tee "$OUT/hashes.txt"
