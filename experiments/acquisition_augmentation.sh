#!/usr/bin/env bash
# Issue 25 part 3: the acquisition chain as *training* augmentation against the canonical chain alone, measured on
# the default recipe (configs/default.yaml: Lite0, 112 px, 6 epochs; train-only runs, so the test split is never
# predicted). Two arms, same seed, differing only in train.augmentation.params.acquisition (0 vs 0.8, the value of
# configs/two-populations.yaml); eval.test=false keeps the test split's labels unread. Figures: validation balanced accuracy (the run's metrics) and, from
# benchmarks/acquisition_invariance.py, top-1 / triage agreement between the 235 originals and their 200x150 copies
# and on JPEG / down-scaled variants of the test split (agreement only: no label is read), each with and without
# the canonical chain. Written before it ran.
#   bash experiments/acquisition_augmentation.sh OUT_DIR [SEED]
set -euo pipefail
out=${1:?output folder}; seed=${2:-0}
mkdir -p "$out"
for arm in canonical-only:0 acquisition-aug:0.8; do
  name=${arm%%:*}; p=${arm##*:}
  lesionlab train --config configs/default.yaml --data-root "${LESIONLAB_DATA:-../shared/data}" --output-dir "$out" \
    name="acq-$name-s$seed" train.refit=false train.refit_ensemble=false eval.test=false train.seed="$seed" \
    "train.augmentation.params.acquisition=$p" \
    > "$out/acq-$name-s$seed.log" 2>&1
done
python benchmarks/acquisition_invariance.py --data-root "${LESIONLAB_DATA:-../shared/data}" --tta none \
  --model "$(ls -d "$out"/acq-canonical-only-s"$seed"-*/ | tail -1)" \
  --model "$(ls -d "$out"/acq-acquisition-aug-s"$seed"-*/ | tail -1)" \
  --canonical none --canonical default --test-images 94 --out "$out/acquisition-augmentation-s$seed.csv"
