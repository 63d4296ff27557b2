"""Leakage audit: near-duplicate images across splits (perceptual hashes) and ``lesionlab leakage-audit``, which
trains one configuration on an image-level split and on the lesion-disjoint split and reports how much the
image-level split — images of one lesion in both training and test, as in several published studies — inflates
every test metric."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import ExperimentConfig, save_config
from lesionlab.data.near_duplicates import close_pairs, perceptual_hashes
from lesionlab.data.prepare import prepare_data
from lesionlab.data.roots import absolute_data_config
from lesionlab.reports.artifacts import headline
from lesionlab.reports.html import Report, table_html
from lesionlab.runs import RunPaths, discards_unstarted_runs

logger = logging.getLogger(__name__)


def cross_split_duplicates(table: pd.DataFrame, hashes: np.ndarray, max_distance: int = 4,
                           lesion_column: str = "lesion_id") -> pd.DataFrame:
    """Near-duplicate pairs whose images lie in different splits (train–val, train–test, val–test)."""
    split = table["split"].to_numpy()
    rows = []
    for sa, sb in (("train", "val"), ("train", "test"), ("val", "test")):
        ia, ib = np.flatnonzero(split == sa), np.flatnonzero(split == sb)
        for i, j, d in close_pairs(hashes[ia], hashes[ib], max_distance):
            ra, rb = table.iloc[ia[i]], table.iloc[ib[j]]
            rows.append({"split_a": sa, "split_b": sb, "image_a": ra["image_id"], "image_b": rb["image_id"],
                         "label_a": ra["label"], "label_b": rb["label"], "distance": int(d),
                         "same_lesion": str(ra[lesion_column]) == str(rb[lesion_column])})
    return pd.DataFrame(rows, columns=["split_a", "split_b", "image_a", "image_b", "label_a", "label_b", "distance",
                                       "same_lesion"])


def duplicate_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pair counts per split pair: all, same lesion id (a leak), different lesion ids (possible undeclared copies)."""
    rows = []
    for (sa, sb), g in pairs.groupby(["split_a", "split_b"]) if len(pairs) else []:
        rows.append({"splits": f"{sa}–{sb}", "pairs": len(g), "same lesion": int(g["same_lesion"].sum()),
                     "different lesion ids": int((~g["same_lesion"]).sum()),
                     "same label": int((g["label_a"] == g["label_b"]).sum())})
    return pd.DataFrame(rows, columns=["splits", "pairs", "same lesion", "different lesion ids", "same label"])


def lesion_overlap(table: pd.DataFrame, lesion_column: str) -> float:
    """Share of test images whose lesion also has an image in the training or validation split."""
    test = table["split"] == "test"
    seen = set(table.loc[~test, lesion_column].astype(str))
    return float(table.loc[test, lesion_column].astype(str).isin(seen).mean()) if test.any() else float("nan")


def inflation_table(lesion: dict, image: dict) -> pd.DataFrame:
    """Every headline and per-class metric under both splits, with the image-level split's inflation."""
    rows = {name: (a, b) for (name, a), (_, b) in zip(headline(lesion), headline(image), strict=True)
            if name != "test images"}
    for cls, pc in lesion["per_class"].items():
        for key in ("recall", "auc"):
            rows[f"{cls} {'sensitivity' if key == 'recall' else 'AUC'}"] = (pc[key], image["per_class"][cls][key])
    frame = pd.DataFrame(rows, index=["lesion-disjoint split", "image-level split"]).T
    frame["inflation"] = frame["image-level split"] - frame["lesion-disjoint split"]
    base = frame["lesion-disjoint split"].abs()
    frame["inflation %"] = 100 * frame["inflation"] / base.where(base > 0)  # NaN, not inf, from a zero base
    frame.index.name = "test metric"
    return frame


def leaked_subset_table(table: pd.DataFrame, predictions: pd.DataFrame, lesion_column: str) -> pd.DataFrame:
    """One model, two kinds of test image: those whose lesion has another image in training/validation (leaked)
    and the rest — accuracy and balanced accuracy on each."""
    from lesionlab.evaluation.metrics import balanced_accuracy

    seen = set(table.loc[table["split"] != "test", lesion_column].astype(str))
    lesion = table.set_index(table["image_id"].astype(str))[lesion_column].astype(str)
    preds = predictions.assign(leaked=predictions["image_id"].astype(str).map(lesion).isin(seen))
    classes = sorted(set(preds["truth"]) | set(preds["prediction"]))
    rows = {}
    for name, sub in (("leaked (lesion also in train/val)", preds[preds["leaked"]]),
                      ("not leaked", preds[~preds["leaked"]])):
        y = sub["truth"].map(classes.index).to_numpy()
        yhat = sub["prediction"].map(classes.index).to_numpy()
        rows[name] = {"test images": len(sub), "accuracy": float((y == yhat).mean()) if len(sub) else float("nan"),
                      "balanced accuracy": balanced_accuracy(y, yhat, len(classes)) if len(sub) else float("nan")}
    frame = pd.DataFrame(rows).T
    frame["test images"] = frame["test images"].astype(int)
    frame.index.name = "image-level split, test images"
    return frame


@dataclass(frozen=True)
class LeakageResult:
    directory: Path
    inflation: pd.DataFrame | None
    duplicates: pd.DataFrame
    seconds: float


@discards_unstarted_runs
def leakage_audit(cfg: ExperimentConfig, *, max_distance: int = 4, train_models: bool = True) -> LeakageResult:
    """Scan the lesion-disjoint split for near-duplicates; optionally train both splits and compare test metrics."""
    from lesionlab.engine.train import train

    t0 = time.perf_counter()
    cfg = replace(cfg, data=absolute_data_config(cfg.data))
    lesion_cfg = replace(cfg, data=replace(cfg.data, split=replace(cfg.data.split, unit="lesion")))
    image_cfg = replace(cfg, data=replace(cfg.data, split=replace(cfg.data.split, unit="image")))
    root = RunPaths.create(cfg.output_dir, f"{cfg.name}-leakage-audit").root
    save_config(lesion_cfg, root / "config.yaml")
    data = prepare_data(lesion_cfg.data, progress=cfg.train.progress)
    hashes = perceptual_hashes(data.images[data.rows])
    pairs = cross_split_duplicates(data.table, hashes, max_distance)
    pairs.to_csv(root / "near_duplicates.csv", index=False)
    dup = duplicate_summary(pairs)
    image_table = prepare_data(image_cfg.data, progress=False).table
    stats = {"images": len(data.table), "hash_max_distance": max_distance,
             "test_images_with_lesion_in_train_or_val": {
                 "lesion-disjoint split": lesion_overlap(data.table, "lesion_id"),
                 "image-level split": lesion_overlap(image_table, "true_lesion_id")}}
    inflation = None
    if train_models:
        results = {}
        for label, c in (("lesion-disjoint", lesion_cfg), ("image-level", image_cfg)):
            (root / label / "figures").mkdir(parents=True)
            results[label] = train(replace(c, name=label), run=RunPaths(root / label))
        inflation = inflation_table(results["lesion-disjoint"].metrics, results["image-level"].metrics)
        inflation.to_csv(root / "inflation.csv")
        leaked = leaked_subset_table(image_table, pd.read_csv(root / "image-level" / "predictions.csv",
                                                              dtype={"image_id": str}), "true_lesion_id")
        leaked.to_csv(root / "leaked_subsets.csv")
        stats["train_seconds"] = {k: r.seconds["total"] for k, r in results.items()}
    seconds = time.perf_counter() - t0
    stats["seconds"] = seconds
    (root / "leakage.json").write_text(json.dumps(stats, indent=2))
    _report(root, cfg, inflation, dup, stats)
    return LeakageResult(root, inflation, dup, seconds)


def _report(root: Path, cfg: ExperimentConfig, inflation: pd.DataFrame | None, dup: pd.DataFrame,
            stats: dict) -> None:
    report = Report(f"LesionLab leakage audit: {cfg.name}",
                    f"{root.name} · {stats['images']} images · {cfg.data.image_size}px · backbone "
                    f"{cfg.model.backbone} · {stats['seconds']:.0f}s")
    overlap = stats["test_images_with_lesion_in_train_or_val"]
    report.add_cards("Test images whose lesion was also trained or validated on",
                     [(k, v) for k, v in overlap.items()])
    if inflation is not None:
        report.add("How much an image-level split inflates the test metrics", table_html(inflation) +
                   "<p class='muted'>Same configuration, same images, two splits: image-level (lesion ids ignored, "
                   "so other images of a test lesion can be in training) and lesion-disjoint. Inflation = "
                   "image-level − lesion-disjoint. The runs are in image-level/ and lesion-disjoint/.</p>")
        leaked = root / "leaked_subsets.csv"
        if leaked.is_file():
            report.add("Leaked vs not leaked test images (image-level run)",
                       table_html(pd.read_csv(leaked, index_col=0)) +
                       "<p class='muted'>The same model on its own test images, split by whether another image of "
                       "the lesion was in its training or validation split.</p>")
    report.add("Near-duplicates across the lesion-disjoint splits",
               table_html(dup, index=False) +
               f"<p class='muted'>64-bit perceptual hashes (pHash) of the cached {cfg.data.image_size}px crops; a pair "
               f"is a near-duplicate within {stats['hash_max_distance']} bits. 'Same lesion' pairs would be a leak "
               "(0 by construction); pairs with different lesion ids are candidates for undeclared duplicates — "
               "inspect near_duplicates.csv.</p>")
    report.write(root / "report.html")
