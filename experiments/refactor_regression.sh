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
cd "$OUT"
find . \( -name metrics.json -o -name calibration.json -o -name ensemble.json -o -name operating_points.csv \
       -o -name cv_summary.csv -o -name val_by_source.json -o -name val_metrics.json -o -name model.pt \) | sort | while read -r f; do
  # names and times differ between runs: hash the numbers only (drop keys holding times, paths or run names)
  "$PY" - "$f" <<'PY'
import hashlib, json, re, sys
p = sys.argv[1]
if p.endswith(".pt"):  # the fitted operating point and the weights
    import torch
    blob = torch.load(p, map_location="cpu", weights_only=False)
    prep = {k: blob["preprocessing"][k] for k in ("temperature", "thresholds", "unsure_threshold")}
    weights = hashlib.sha256(b"".join(v.numpy().tobytes() for v in blob["state_dict"].values())).hexdigest()
    text = json.dumps(prep, sort_keys=True) + weights
else:
    text = open(p).read()
if p.endswith(".json"):
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if not re.search(r"second|time|path|root|name|created|dir|run|member|date|version", k)}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o
    text = json.dumps(clean(json.loads(text)), sort_keys=True)
print(hashlib.sha256(text.encode()).hexdigest()[:16], re.sub(r"-\d{8}-\d{6}", "-<ts>", p))
PY
done | tee "$OUT/hashes.txt"
