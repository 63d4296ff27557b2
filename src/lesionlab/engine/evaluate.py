"""``lesionlab evaluate``: score a trained run on any dataset, refusing images the run was trained on."""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from lesionlab.config import DataConfig, EvalConfig
from lesionlab.data.taxonomy import can_map, label_map
from lesionlab.engine.core.quiet import quiet
from lesionlab.engine.core.run_data import (
    LoadedRun,
    describe_seen,
    load_run,
    load_run_dataset,
    seen_by_kind,
)
from lesionlab.errors import EvaluationInputError, LesionLabError
from lesionlab.inference.predict import predict_probs
from lesionlab.reports.artifacts import write_evaluation
from lesionlab.reports.depth_artifacts import write_shipped_calibration
from lesionlab.reports.run_report import write_evaluation_report
from lesionlab.runs import RunPaths

logger = logging.getLogger(__name__)


class SeenDataError(LesionLabError, ValueError):
    """The evaluation set contains images or lesions the model was trained or validated on."""


@dataclass(frozen=True)
class EvaluationResult:
    directory: Path
    metrics: dict
    excluded: int


def _stored_root(run: LoadedRun) -> str | None:
    try:
        return run.config().data.root
    except EvaluationInputError:  # no config.yaml: only --data-root / $LESIONLAB_DATA / the user cache remain
        return None


def _stored_eval(run: LoadedRun) -> EvalConfig:
    try:
        return run.config().eval
    except EvaluationInputError:  # a bare model.pt or a released model without config.yaml
        return EvalConfig()


@quiet
def evaluate_run(run_dir: str | Path, data_cfg: DataConfig, *, out_dir: str | Path | None = None,
                 exclude_seen: bool = False, batch_size: int | None = None, topk: tuple[int, ...] | None = None,
                 progress: bool = True) -> EvaluationResult:
    """Evaluate the model of ``run_dir`` on ``data_cfg`` using the run's own crop and size.

    The data root is ``data_cfg.root`` (``--data-root``) > ``$LESIONLAB_DATA`` > the run's stored root. Labels are
    mapped into the model's taxonomy (e.g. ISIC-8 AK/SCC → HAM akiec). Images whose image or lesion
    was used for training/validation — by the run or by any member of an ensemble — raise :class:`SeenDataError`
    unless ``exclude_seen`` drops them. ``run_dir`` may be an ensemble folder (``ensemble.json``). ``batch_size`` and
    ``topk`` default to the run's ``eval`` settings.
    """
    loaded = load_run(run_dir)
    run_eval = _stored_eval(loaded)
    batch_size, topk = batch_size or run_eval.batch_size, topk or run_eval.topk
    run, model, prep = RunPaths(loaded.root), loaded.model, loaded.prep
    cfg = replace(data_cfg, crop=prep.crop, image_size=prep.image_size, max_samples=data_cfg.max_samples,
                  canonical=prep.canonical)  # the images reach the model as they do in predict
    _, data = load_run_dataset(cfg, data_cfg.root, _stored_root(loaded), progress=progress, with_split=False)
    dataset, rows = data.dataset, data.rows
    flags = seen_by_kind(dataset.table, loaded.split_files)
    seen = flags.any(axis=1).to_numpy()
    if seen.any() and not exclude_seen:
        raise SeenDataError(
            f"{int(seen.sum())} of {len(seen)} images were used to train or validate this run, or share a lesion or "
            f"patient with one that was ({describe_seen(flags)}; ids compared across ISIC releases); evaluating on "
            "them would overstate performance. Pass --exclude-seen to drop them.")
    outside = dataset.table.iloc[:0]
    if dataset.taxonomy.name != prep.taxonomy:
        if not can_map(dataset.taxonomy.name, prep.taxonomy):
            raise ValueError(f"Cannot evaluate a {prep.taxonomy!r} model on {dataset.taxonomy.name!r} labels")
        inside = dataset.table["label"].isin(list(label_map(dataset.taxonomy.name, prep.taxonomy))).to_numpy()
        dataset, outside = dataset.relabel_partial(prep.taxonomy)
        rows, seen = rows[inside], seen[inside]
    if tuple(dataset.class_names) != tuple(prep.class_names):
        raise ValueError(f"Dataset classes {dataset.class_names} differ from the model's {prep.class_names}")
    keep = ~seen
    if not keep.any():
        raise SeenDataError("no image of this dataset is left to evaluate: every one was used in training/validation "
                            "or has no class in the model's taxonomy")
    rows = rows[keep]
    table = dataset.table[keep].reset_index(drop=True)
    y = dataset.targets()[keep]
    spec = getattr(model, "metadata_spec", None)  # metadata-fusion models read the table's age/sex/site
    probs = predict_probs(model, data.images, prep.mean, prep.std, indices=rows, batch_size=batch_size,
                          temperature=prep.temperature, tta=prep.tta, progress=progress,
                          metadata=None if spec is None else spec.encode(table))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = Path(out_dir) if out_dir else run.root / "evaluations" / f"{dataset.name.replace(':', '-')}-{stamp}"
    metrics = write_evaluation(directory, table, y, probs, prep.class_names, topk, thresholds=prep.thresholds)
    write_shipped_calibration(directory, y, probs, prep.temperature)
    note = f"{int(seen.sum())} images seen in training/validation were excluded. " if seen.any() else ""
    if len(outside):
        outside.to_csv(directory / "outside_taxonomy.csv", index=False)
        counts = ", ".join(f"{k} {v}" for k, v in outside["label"].value_counts().items())
        note += (f"{len(outside)} images have diagnoses outside the model's {prep.taxonomy} classes and are not "
                 f"scored ({counts}); see outside_taxonomy.csv.")
        logger.warning("%d images outside the %s taxonomy are not scored (%s)", len(outside), prep.taxonomy, counts)
    write_evaluation_report(directory, metrics, title=f"LesionLab evaluation of {run.root.name}",
                            subtitle=f"on {dataset.name} ({len(table)} images, {prep.crop} {prep.image_size}px)",
                            dataset=dataset.name, notes=note)
    logger.info("Balanced accuracy %.4f, macro AUC %.4f on %d images -> %s", metrics["balanced_accuracy"],
                metrics["auc_macro"], len(table), directory)
    return EvaluationResult(directory, metrics, int(seen.sum()))
