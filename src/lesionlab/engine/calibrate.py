"""``lesionlab calibrate RUN``: refit temperature scaling and the priority-1 thresholds of a finished run on its
validation split, store them in its ``model.pt`` and report calibration and operating points on its test split."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path

from lesionlab.engine.core.run_data import load_run, prepare_run_data
from lesionlab.engine.core.validation import tune_on_validation
from lesionlab.errors import EvaluationInputError
from lesionlab.inference.calibration import probs_from_view_logits
from lesionlab.inference.predict import predict_view_logits
from lesionlab.models.checkpoint import update_preprocessing
from lesionlab.reports.depth_artifacts import write_calibration, write_operating_points

logger = logging.getLogger(__name__)


def calibrate_run(run_dir: str | Path, *, data_root: str | None = None, calibrate: bool = True,
                    triage_sensitivity: float | None = None) -> dict:
    """Fit on validation, save into ``model.pt``, write ``calibration.json`` and ``operating_points.csv``.
    ``triage_sensitivity`` defaults to the run's ``eval.triage_sensitivity`` (0.9 where the run stored none)."""
    run = load_run(run_dir)
    if run.is_ensemble:
        raise EvaluationInputError("an ensemble keeps its members' temperatures: calibrate each member run "
                                   "(fold-k/) or re-run `lesionlab cv`")
    cfg, data = prepare_run_data(run, data_root)
    if triage_sensitivity is None:
        triage_sensitivity = cfg.eval.triage_sensitivity or 0.9
    cfg = replace(cfg, eval=replace(cfg.eval, calibrate=calibrate, triage_sensitivity=triage_sensitivity))
    base = replace(run.prep, temperature=1.0, thresholds={})  # refit from scratch, never on top of an old fit
    prep, val = tune_on_validation(run.model, data, base, cfg)  # temperature, thresholds, unsure threshold
    if val is None:
        raise EvaluationInputError(f"{run.root} has no validation split to fit on" + (
            " (a refit trained on it; calibrate its train-only sibling and refit again)"
            if cfg.train.fit_on == "train+val" else ""))
    fields = asdict(prep)
    update_preprocessing(run.root / "model.pt", **{k: fields[k] for k in ("temperature", "thresholds",
                                                                          "unsure_threshold", "unsure_rule")
                                                   if k in fields})
    test = data.indices("test")
    logits = predict_view_logits(run.model, data.images, prep.mean, prep.std, indices=data.rows[test],
                                 batch_size=cfg.eval.batch_size, tta=prep.tta)
    (run.root / "figures").mkdir(exist_ok=True)
    summary = write_calibration(run.root, data.targets()[test], logits, prep.temperature, cfg.eval.ece_bins,
                                "temperature refitted on the validation split by `lesionlab calibrate`; measured "
                                "on the held-out test split")
    write_operating_points(run.root, val.targets, probs_from_view_logits(val.view_logits, prep.temperature),
                           data.targets()[test], probs_from_view_logits(logits, prep.temperature), prep, cfg)
    logger.info("Stored temperature %.3f and thresholds %s in %s", prep.temperature, prep.thresholds, run.root)
    return {**summary, "thresholds": prep.thresholds}
