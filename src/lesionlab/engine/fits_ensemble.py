"""``train.refit_ensemble``: a refit job's two fits shipped as one equal-weight ensemble.

The train-only run and its refit on training + validation lesions are two models of one recipe that saw different
data, so their averaged probabilities are a 2-member ensemble for no extra training. The ensemble folder holds
``ensemble.json`` (members as ``../RUN/model.pt``, so the three folders move together), the refit's config and the
one look at the test split. Its triage thresholds and unsure threshold are the train-only run's, chosen on that run's
validation split, exactly as the refit ships them: no validation lesion is left that neither member trained on.
"""

from __future__ import annotations

import json
import shutil
import time

import pandas as pd

from lesionlab.engine.run_data import load_run, prepare_run_data
from lesionlab.engine.skeleton import Finalized, evaluate_test
from lesionlab.models.checkpoint import load_model
from lesionlab.models.ensemble import write_manifest
from lesionlab.reports.html import table_html
from lesionlab.reports.run_report import write_evaluation_report
from lesionlab.runs import RunPaths, TrainResult

ROLES = ("train-only run (picks the epoch; calibrates both)", "refit on training + validation lesions")


def ensemble_of_fits(sibling: TrainResult, refit: TrainResult, name: str, *, test: bool = True) -> TrainResult:
    """Write ``{name}-ensemble-STAMP/`` beside the refit; with ``test``, evaluate it once on the held-out test split
    and write its report (``report.html``)."""
    t0 = time.perf_counter()
    run = RunPaths.create(refit.run.root.parent, f"{name}-ensemble")
    _, prep = load_model(refit.run.model)  # the refit ships the train-only run's validation-fitted calibration
    extra = {"name": run.root.name, "tta": prep.tta, "roles": list(ROLES),
             "note": "equal weights; thresholds and unsure threshold chosen on the train-only run's validation "
                     "split, never on test"}
    if prep.unsure_threshold is not None:
        extra.update(unsure_threshold=prep.unsure_threshold, unsure_rule=prep.unsure_rule)
    write_manifest(run.root, [sibling.run.model, refit.run.model], thresholds=prep.thresholds, extra=extra)
    shutil.copyfile(refit.run.config, run.config)  # its data, split and eval settings (evaluate re-creates them)
    before = sum(r.seconds.get("total", r.seconds["fit"]) for r in (sibling, refit))
    seconds = {"fit": sibling.seconds["fit"] + refit.seconds["fit"], "total": before + time.perf_counter() - t0}
    if not test:
        (run.root / "timings.json").write_text(json.dumps(seconds, indent=2))
        return TrainResult(run, {}, seconds)
    loaded = load_run(run.root)  # the artefact exactly as `evaluate` and `predict` load it
    cfg, data = prepare_run_data(loaded)  # refuses a test split that either member trained or validated on
    best_epoch = int(sibling.metrics.get("best_epoch", 0))
    metrics = evaluate_test(run, Finalized(loaded.model, loaded.prep, best_epoch, None), data, cfg)
    seconds.update(evaluate=time.perf_counter() - t0, total=before + time.perf_counter() - t0)
    (run.root / "timings.json").write_text(json.dumps(seconds, indent=2))
    write_evaluation_report(
        run.root, metrics, title=f"LesionLab run: {name} (train-only run + refit, one ensemble)",
        subtitle=f"{run.root.name} · {cfg.data.dataset} · backbone {cfg.model.backbone} · {cfg.data.image_size}px "
                 f"{cfg.data.crop} · held-out lesion-disjoint test split ({len(data.indices('test'))} images)",
        dataset=cfg.data.dataset, extra_sections=[("Members", _members_html(sibling, refit))])
    return TrainResult(run, metrics, seconds)


def _members_html(sibling: TrainResult, refit: TrainResult) -> str:
    rows = []
    for role, member in zip(ROLES, (sibling, refit), strict=True):
        splits = pd.read_csv(member.run.splits)["split"].value_counts()
        rows.append({"member": role, "run": member.run.root.name, "training images": int(splits.get("train", 0)),
                     "validation images": int(splits.get("val", 0)),
                     "fit minutes": round(member.seconds["fit"] / 60, 1)})
    val = sibling.metrics.get("val_bal_acc")
    note = (f"<p>The train-only run's validation balanced accuracy: {val:.4f}. The refit trained on those validation "
            "lesions, so the ensemble has no validation figure of its own.</p>" if val is not None else "")
    return table_html(pd.DataFrame(rows), index=False) + note + (
        "<p>Each member keeps its temperature; the ensemble averages their temperature-scaled probabilities over the "
        "test-time views with equal weights.</p>")


__all__ = ["ensemble_of_fits"]
