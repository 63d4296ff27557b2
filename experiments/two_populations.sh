#!/usr/bin/env bash
# Issue 25 runs, in order (each writes its own run folder under runs/issue25/; logs beside them):
#   1. configs/two-populations.yaml: HAM10000 + isic-archive with the acquisition chain (train-only + refit, ensemble)
#   2. the same without the acquisition chain, train-only run (is the chain what makes answers resolution-invariant?)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=runs/issue25
mkdir -p "$OUT"
.venv/bin/lesionlab train --config configs/two-populations.yaml --data-root "$DATA" output_dir=$OUT \
    > "$OUT/two-populations.log" 2>&1
.venv/bin/lesionlab train --config configs/two-populations.yaml --data-root "$DATA" output_dir=$OUT \
    name=two-populations-noacq train.augmentation.params={} train.refit=false > "$OUT/two-populations-noacq.log" 2>&1
