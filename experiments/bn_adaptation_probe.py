"""Does re-estimating BatchNorm statistics on a site's images help the built-in model there? (issue 25, part 6)

AdaBN (Li et al., "Revisiting Batch Normalization for Practical Domain Adaptation", 2016): every BatchNorm layer of
each member forgets its HAM10000 running statistics and re-estimates them from the site's images (no labels), the
weights unchanged. Two protocols: transductive (statistics from all the site's images, scored on the same images) and
cross-fitted (statistics from a random half, scored on the other half, both ways). Figures at the built-in model's
stored thresholds, one view (no TTA) before and after; balanced accuracy, melanoma AUC, priority-1 sensitivity and
specificity. Nothing is chosen here: it tells whether ``lesionlab adapt`` should offer BN re-estimation.

    .venv/bin/python experiments/bn_adaptation_probe.py ph2 [--sample N] [--out docs/results/bn-adaptation-probe.jsonl]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from lesionlab.config import DataConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.data.transforms import to_model_input
from lesionlab.evaluation.bootstrap import binary_auc, priority1
from lesionlab.inference.predict import predict_probs
from lesionlab.serving.predictor import Predictor


def with_site_statistics(member: nn.Module, images: np.ndarray, prep) -> nn.Module:
    """A copy of ``member`` whose BatchNorm running statistics are the cumulative mean over ``images``."""
    m = copy.deepcopy(member).eval()
    norms = [b for b in m.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)]
    for b in norms:
        b.reset_running_stats()
        b.momentum = None  # cumulative average over all batches
        b.train()
    with torch.no_grad():
        for i in range(0, len(images), 32):
            m(to_model_input(torch.from_numpy(images[i:i + 32]).permute(0, 3, 1, 2), prep.mean, prep.std))
    return m.eval()


def figures(y: np.ndarray, probs: np.ndarray, p: Predictor) -> dict[str, float]:
    truth, flag = priority1(y, probs, p.class_names, p.prep.thresholds)
    mel = p.class_names.index("mel")
    return {"balanced_accuracy": balanced_accuracy_score(y, probs.argmax(1)),
            "mel_auc": binary_auc(y == mel, probs[:, mel]),
            "priority1_sensitivity": float(flag[truth].mean()), "priority1_specificity": float((~flag[~truth]).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="a registered dataset the built-in model never trained on (ph2, isic-archive)")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--sample", type=int, default=None, help="a random sample of this many images (seed 0)")
    ap.add_argument("--out", default="docs/results/bn-adaptation-probe.jsonl", help="one JSON line per dataset")
    args = ap.parse_args()
    p = Predictor.pretrained()
    ds = load_dataset(DataConfig(dataset=args.dataset, root=str(Path(args.data_root).resolve())))
    table = ds.relabel(p.prep.taxonomy).table.reset_index(drop=True)
    if args.sample:
        table = table.sample(args.sample, random_state=0).reset_index(drop=True)
    y = np.array([p.class_names.index(label) for label in table["label"]])
    x = np.stack([p.preprocess(path) for path in table["path"]])
    model, members = p.model, p.model.members

    def scored(rows: np.ndarray, fit_rows: np.ndarray | None) -> np.ndarray:
        if fit_rows is not None:
            model.members = nn.ModuleList([with_site_statistics(m, x[fit_rows], p.prep) for m in members])
        try:
            return predict_probs(model, x[rows], p.prep.mean, p.prep.std, tta="none", batch_size=64)
        finally:
            model.members = members

    everything = np.arange(len(y))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    a, b = order[: len(y) // 2], order[len(y) // 2:]
    crossed = np.zeros((len(y), len(p.class_names)))
    crossed[b], crossed[a] = scored(b, a), scored(a, b)
    row = {"dataset": args.dataset, "images": len(y), "tta": "none",
           "before": figures(y, scored(everything, None), p),
           "adabn_transductive": figures(y, scored(everything, everything), p),
           "adabn_cross_fitted": figures(y, crossed, p)}
    print(json.dumps(row, indent=1))
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
