"""``lesionlab ensemble RUN RUN ...``: trained runs of one task shipped as one ensemble folder.

Members are run directories (train-only runs, refits) or ensemble folders, whose members are taken in. They must
share classes, crop, normalisation and the held-out test split; image sizes may differ (the ensemble reads images at
the largest and resizes them for smaller members). The ensemble averages the members' temperature-scaled
probabilities over the test-time views (equal weights unless given).

Its operating point (priority-1 thresholds, unsure threshold) is fitted on the ensemble's own validation
predictions when every member validated on the same lesions and none trained on them (train-only runs of one split,
e.g. several seeds). Otherwise no validation lesion is unseen, and the operating point is copied from one member
(``thresholds_from``: a train-only run's, as a refit job does). The ensemble's and each member's validation figures
go to ``val_metrics.json`` and ``members.csv``; the test split is scored only when asked (``test=True``), once.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionlab.errors import EvaluationInputError
from lesionlab.models.ensemble import combine_member_probs, manifest_path, read_manifest, write_manifest
from lesionlab.runs import RunPaths, TrainResult, discards_unstarted_runs


@dataclass(frozen=True)
class _Member:
    model: Path  # its model.pt
    run: Path  # its run directory (splits.csv, config.yaml)
    splits: pd.DataFrame


def member_models(sources: Sequence[str | Path]) -> list[Path]:
    """The ``model.pt`` of every member: runs as given, ensemble folders expanded; a member given twice is refused."""
    models: list[Path] = []
    for source in map(Path, sources):
        manifest = manifest_path(source)
        if manifest is not None:
            found = [m / "model.pt" if m.is_dir() else m for m in read_manifest(manifest)["members"]]
        elif (source / "model.pt").is_file() or (source.is_file() and source.suffix == ".pt"):
            found = [source / "model.pt" if source.is_dir() else source]
        else:
            raise FileNotFoundError(f"{source} is neither a run directory (model.pt) nor an ensemble folder "
                                    "(ensemble.json)")
        models += [m.resolve() for m in found]
    repeated = sorted({str(m) for m in models if models.count(m) > 1})
    if repeated:
        raise EvaluationInputError(f"ensemble members given more than once: {repeated}")
    if len(models) < 2:
        raise EvaluationInputError("an ensemble needs at least two members")
    return models


def _members(models: Sequence[Path]) -> list[_Member]:
    out = []
    for model in models:
        splits_file = model.parent / "splits.csv"
        if not splits_file.is_file():
            raise EvaluationInputError(f"{model.parent} has no splits.csv: cannot tell which images it trained on")
        out.append(_Member(model, model.parent, pd.read_csv(splits_file, dtype={"image_id": str})))
    tests = [frozenset(m.splits.loc[m.splits["split"] == "test", "image_id"]) for m in out]
    if len(set(tests)) > 1:
        sizes = ", ".join(f"{m.run.name}: {len(t)}" for m, t in zip(out, tests, strict=True))
        raise EvaluationInputError(f"the members hold out different test splits ({sizes} images): an ensemble is "
                                   "scored on one held-out test split, so every member must share it")
    return out


def unseen_validation(members: Sequence[_Member]) -> frozenset[str]:
    """Image ids every member validated on and none trained on: where the ensemble's operating point can be fitted.
    Empty when a member is a refit (it trained on its validation lesions) or the members used different splits."""
    vals = [frozenset(m.splits.loc[m.splits["split"] == "val", "image_id"]) for m in members]
    trained = frozenset().union(*(frozenset(m.splits.loc[m.splits["split"] == "train", "image_id"]) for m in members))
    common = frozenset.intersection(*vals)
    return common - trained if all(v == common for v in vals) else frozenset()


def _copied_operating_point(source: str | Path) -> tuple[dict[str, float], dict[str, Any]]:
    from lesionlab.models.checkpoint import load_model

    path = Path(source)
    _, prep = load_model(path / "model.pt" if path.is_dir() else path)
    point = f"copied from {path.resolve().name} (chosen on a validation split, never on test)"
    extra: dict[str, Any] = {"operating_point": point}
    if prep.unsure_threshold is not None:
        extra.update(unsure_threshold=prep.unsure_threshold, unsure_rule=prep.unsure_rule)
    return dict(prep.thresholds), extra


@discards_unstarted_runs  # a failure (e.g. members of different image sizes) leaves no half-made folder
def ensemble_runs(sources: Sequence[str | Path], output_dir: str | Path, name: str, *,
                  weights: Sequence[float] | None = None, thresholds_from: str | Path | None = None,
                  roles: Sequence[str] | None = None, test: bool = False, data_root: str | None = None,
                  progress: bool = False, title: str | None = None, best_epoch: int = 0,
                  select: int | None = None) -> TrainResult:
    """Write ``output_dir/{name}-STAMP/`` (``ensemble.json``, the last member's ``config.yaml``); fit its operating
    point on unseen validation lesions (or copy ``thresholds_from``'s); with ``test``, score the test split once.

    ``select``: keep at most that many of the runs, chosen greedily on the validation lesions (:func:`greedy_members`;
    the path is written to ``selection.csv``)."""
    t0 = time.perf_counter()
    members = _members(member_models(sources))
    val_ids = unseen_validation(members)
    if thresholds_from is None and not val_ids:
        raise EvaluationInputError(
            "no validation lesion is unseen by every member (a refit trained on them, or the members used different "
            "splits), so the ensemble's operating point cannot be fitted: pass --thresholds-from RUN to copy a "
            "train-only member's")
    if select is not None and (select < 2 or weights is not None or not val_ids):
        raise EvaluationInputError("--select K needs K >= 2, equal weights and train-only runs of one split (their "
                                   "shared validation lesions choose the members)")
    run = RunPaths.create(output_dir, name)
    _write_config(members, run.config)
    extra: dict[str, Any] = {"name": run.root.name}
    if roles is not None:
        extra["roles"] = list(roles)
    write_manifest(run.root, [m.model for m in members], weights=weights, extra=extra)  # provisional: no thresholds
    loaded, cfg, data = _open(run.root, data_root, progress)
    cached: dict[Path, np.ndarray] = {}
    if select is not None:
        candidates = len(members)
        members, cached, extra["selection"] = _select(run.root, members, loaded, cfg, data, val_ids, select,
                                                      progress)
        size = loaded.prep.image_size
        _write_config(members, run.config)
        write_manifest(run.root, [m.model for m in members], extra=extra)
        loaded, cfg, data = _open(run.root, data_root, progress)
        if loaded.prep.image_size != size:  # the largest run was left out: the chosen ones are read at their size
            cached = {}
    extra["tta"] = loaded.prep.tta
    if thresholds_from is not None:
        thresholds, more = _copied_operating_point(thresholds_from)
        validation: dict[str, Any] = {}
    else:
        thresholds, more, validation = _fit_on_validation(run.root, members, loaded, cfg, data, val_ids, weights,
                                                          cached, progress)
        if select is not None:
            validation["selected_from"] = candidates
    extra.update(more)
    write_manifest(run.root, [m.model for m in members], weights=weights, thresholds=thresholds, extra=extra)
    seconds = {"fit": float(sum(_fit_seconds(m.run) for m in members)), "total": time.perf_counter() - t0}
    (run.root / "timings.json").write_text(json.dumps(seconds, indent=2))
    if not test:
        return TrainResult(run, validation, seconds)
    metrics = score_test_once(run, title=title, progress=progress, data_root=data_root, best_epoch=best_epoch,
                              prepared=(cfg, data))
    return TrainResult(run, metrics, json.loads((run.root / "timings.json").read_text()))


def _write_config(members: Sequence[_Member], path: Path) -> None:
    """The last member's config (its data, split and eval settings: a refit's last), reading images at the largest
    member's size when the sizes differ."""
    from lesionlab.config import load_run_config, save_config

    configs = [load_run_config(m.run / "config.yaml") for m in members]
    size = max(c.data.image_size for c in configs)
    if configs[-1].data.image_size == size:
        shutil.copyfile(members[-1].run / "config.yaml", path)
        return
    save_config(replace(configs[-1], data=replace(configs[-1].data, image_size=size)), path)


def score_test_once(run: RunPaths, *, title: str | None = None, progress: bool = False,
                    data_root: str | None = None, best_epoch: int = 0, prepared: tuple | None = None) -> dict:
    """The ensemble's one look at its held-out test split: metrics, CIs, operating points, report.html.
    ``prepared`` = ``(cfg, data)`` already re-created and checked for this folder (else they are loaded here)."""
    from lesionlab.engine.core.run_data import load_run
    from lesionlab.engine.core.skeleton import Finalized, evaluate_test
    from lesionlab.reports.run_report import write_evaluation_report

    t0 = time.perf_counter()
    if prepared is None:
        loaded, cfg, data = _open(run.root, data_root, progress)
    else:  # the data were checked against the members' splits already; reload only the finished manifest's model
        (cfg, data), loaded = prepared, load_run(run.root)
    metrics = evaluate_test(run, Finalized(loaded.model, loaded.prep, best_epoch, None), data, cfg)
    members = pd.read_csv(run.root / "members.csv") if (run.root / "members.csv").is_file() else None
    _write_timing(run.root, evaluate=time.perf_counter() - t0)
    write_evaluation_report(
        run.root, metrics, title=title or f"LesionLab ensemble: {run.root.name}",
        subtitle=f"{run.root.name} · {cfg.data.dataset} · {len(loaded.members)} members · backbone "
                 f"{cfg.model.backbone} · {cfg.data.image_size}px {cfg.data.crop} · held-out lesion-disjoint test "
                 f"split ({len(data.indices('test'))} images)",
        dataset=cfg.data.dataset, extra_sections=[("Members", members_html(run.root, members))])
    return metrics


def members_html(root: Path, members: pd.DataFrame | None = None) -> str:
    """The report's "Members" section: each member's run, training images, fit minutes (and validation figures)."""
    from lesionlab.reports.html import table_html

    manifest = read_manifest(root / "ensemble.json")
    if members is None:
        members = pd.DataFrame([_member_row(Path(m).parent, w) for m, w in zip(manifest["members"],
                                                                            manifest["weights"], strict=True)])
    roles = manifest.get("roles")
    if roles and len(roles) == len(members):
        members = members.assign(role=roles)
    point = manifest.get("operating_point", "fitted on the validation lesions no member trained on")
    return table_html(members, index=False) + (
        "<p>Each member keeps its temperature; the ensemble averages their temperature-scaled probabilities over "
        f"the test-time views. Triage thresholds and unsure threshold: {point}.</p>")


def _member_row(run: Path, weight: float) -> dict[str, Any]:
    splits = pd.read_csv(run / "splits.csv", dtype={"image_id": str})["split"].value_counts()
    return {"member": run.name, "weight": round(float(weight), 4), "training images": int(splits.get("train", 0)),
            "validation images": int(splits.get("val", 0)), "fit minutes": round(_fit_seconds(run) / 60, 1)}


def _fit_seconds(run: Path) -> float:
    timings = run / "timings.json"
    return float(json.loads(timings.read_text()).get("fit", 0.0)) if timings.is_file() else 0.0


def _write_timing(root: Path, **seconds: float) -> None:
    """Add ``seconds`` (e.g. ``evaluate``) to ``timings.json`` and to its total."""
    path = root / "timings.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored["total"] = stored.get("total", 0.0) + sum(seconds.values())
    stored.update(seconds)
    path.write_text(json.dumps(stored, indent=2))


def _open(root: Path, data_root: str | None, progress: bool):
    from lesionlab.engine.core.run_data import load_run, prepare_run_data

    loaded = load_run(root)  # the ensemble exactly as `evaluate` and `predict` load it
    cfg, data = prepare_run_data(loaded, data_root, progress)  # refuses a test split any member trained on
    return loaded, cfg, data


def _validation_rows(data, val_ids: frozenset[str]) -> np.ndarray:
    val = np.flatnonzero(data.table["image_id"].astype(str).isin(val_ids).to_numpy())
    if len(val) != len(val_ids):
        raise EvaluationInputError(f"{len(val_ids) - len(val)} of the members' validation images are missing from "
                                   "the data found now: pass --data-root")
    return val


def _member_view_logits(loaded, cfg, data, val: np.ndarray, members: Sequence[_Member],
                        cached: dict[Path, np.ndarray] | None = None, progress: bool = False) -> list[np.ndarray]:
    """Each member's validation logits per test-time view, as the ensemble runs it (resized where smaller)."""
    from lesionlab.inference.predict import predict_view_logits

    cached = cached or {}
    return [cached[m.model] if m.model in cached else
            predict_view_logits(model, data.images, loaded.prep.mean, loaded.prep.std, indices=data.rows[val],
                                batch_size=cfg.eval.batch_size, tta=loaded.prep.tta, progress=progress)
            for m, model in zip(members, loaded.model.members, strict=True)]


def greedy_members(view_logits: Sequence[np.ndarray], temperatures: Sequence[float], y: np.ndarray,
                   classes: Sequence[str], limit: int) -> list[dict[str, Any]]:
    """Forward selection without replacement: start from the best run, add whichever raises the equal-weight
    ensemble's (macro AUC, balanced accuracy) most; stop at ``limit`` members or when nothing raises it (two at
    least). Returns the path: one row per step (member index, the ensemble's figures after adding it)."""
    from lesionlab.evaluation.metrics import classification_metrics

    def score(chosen: list[int]) -> tuple[float, float]:
        probs = combine_member_probs([view_logits[i] for i in chosen], [temperatures[i] for i in chosen])
        m = classification_metrics(y, probs, classes, ())
        return float(m["auc_macro"]), float(m["balanced_accuracy"])

    path: list[dict[str, Any]] = []
    chosen: list[int] = []
    best = (-np.inf, -np.inf)
    while len(chosen) < min(limit, len(view_logits)):
        candidates = {i: score([*chosen, i]) for i in range(len(view_logits)) if i not in chosen}
        pick = max(candidates, key=lambda i: candidates[i])
        if candidates[pick] <= best and len(chosen) >= 2:
            break
        chosen.append(pick)
        best = candidates[pick]
        path.append({"step": len(chosen), "member": pick, "val macro AUC": round(best[0], 4),
                     "val balanced accuracy": round(best[1], 4)})
    return path


def _select(root: Path, members: Sequence[_Member], loaded, cfg, data, val_ids: frozenset[str], limit: int,
            progress: bool = False) -> tuple[list[_Member], dict[Path, np.ndarray], str]:
    """The members :func:`greedy_members` keeps (``selection.csv`` shows the path), their cached logits, a note."""
    val = _validation_rows(data, val_ids)
    logits = _member_view_logits(loaded, cfg, data, val, members, progress=progress)
    path = greedy_members(logits, loaded.model.temperatures, data.targets()[val], tuple(loaded.prep.class_names),
                          limit)
    picked = [row["member"] for row in path]
    pd.DataFrame([{**row, "member": members[row["member"]].run.name} for row in path]).to_csv(
        root / "selection.csv", index=False)
    note = (f"{len(picked)} of {len(members)} runs, chosen greedily on the same {len(val)} validation images (macro "
            "AUC, then balanced accuracy): its validation figures are optimistic; the test split judges the choice")
    return [members[i] for i in picked], {members[i].model: logits[i] for i in picked}, note


def _fit_on_validation(root: Path, members: Sequence[_Member], loaded, cfg, data, val_ids: frozenset[str],
                       weights: Sequence[float] | None, cached: dict[Path, np.ndarray] | None = None,
                       progress: bool = False) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """Thresholds and unsure threshold from the ensemble's validation probabilities; validation figures of the
    ensemble and of each member (``members.csv``)."""
    from lesionlab.evaluation.metrics import classification_metrics
    from lesionlab.evaluation.operating_point_fit import fit_operating_point

    val = _validation_rows(data, val_ids)
    y = data.targets()[val]
    classes = tuple(loaded.prep.class_names)
    view_probs, temps, rows = [], [], []
    logits = _member_view_logits(loaded, cfg, data, val, members, cached, progress)
    for m, w, z, temperature in zip(members, read_manifest(root / "ensemble.json")["weights"], logits,
                                    loaded.model.temperatures, strict=True):
        view_probs.append(z)
        temps.append(temperature)
        scores = classification_metrics(y, combine_member_probs([z], [temperature]), classes, ())
        rows.append({**_member_row(m.run, w), "val balanced accuracy": round(scores["balanced_accuracy"], 4),
                     "val macro AUC": round(scores["auc_macro"], 4)})
    point = fit_operating_point(view_probs, y, classes, sensitivity=cfg.eval.triage_sensitivity or 0.9,
                                temperatures=temps, weights=weights)  # members keep their temperatures
    probs, thresholds = point.probs, point.thresholds
    extra: dict[str, Any] = {"operating_point": f"fitted on the ensemble's predictions for {len(val)} validation "
                             "images that no member trained on; never on test"}
    if point.unsure is not None:
        extra.update(unsure_threshold=point.unsure.threshold, unsure_rule=point.unsure.rule)
    scores = classification_metrics(y, probs, classes, ())
    validation = {"val_bal_acc": scores["balanced_accuracy"], "val_auc": scores["auc_macro"],
                  "val_images": len(val), "members": len(members)}
    members_frame = pd.DataFrame(rows)
    members_frame.to_csv(root / "members.csv", index=False)
    (root / "val_metrics.json").write_text(json.dumps(validation, indent=2))
    return thresholds, extra, validation


__all__ = ["ensemble_runs", "greedy_members", "member_models", "members_html", "score_test_once", "unseen_validation"]
