"""Build a released model folder from a trained run: half-precision weights, ONNX export, seen-image list and a
model card whose figures come from evaluating the packaged model itself (own test split + external sets)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lesionlab.config import DataConfig, load_run_config
from lesionlab.data.info import DATASET_INFO
from lesionlab.evaluation.card_metrics import card_metrics
from lesionlab.models.compression import WEIGHT_FORMATS, compress_state
from lesionlab.models.ensemble import manifest_path, read_manifest, write_manifest

INTENDED_USE = (
    "Decision support for trained clinicians triaging dermatoscopic images of pigmented skin lesions: a ranked "
    "differential (top-3 of the HAM10000 classes), calibrated probabilities and a triage priority (1 = possibly "
    "malignant: refer). Research and education; non-commercial use only (the training data are CC BY-NC 4.0).")
LIMITATIONS = (
    "Dermatoscopic images only: clinical (smartphone) photos, histology or non-skin images are out of scope.",
    "Seven classes: lesions outside them (e.g. SCC separately, amelanotic melanoma subtypes, rare tumours) are "
    "forced into one of them.",
    "Decision support, not a diagnosis: it has not been evaluated prospectively or approved as a medical device.",
    "Small classes (df, vasc, akiec) have wide confidence intervals.",
)
#: What each training population is, for the card's limitation on populations (other datasets: their name).
POPULATIONS = {"ham10000": "HAM10000 (Vienna and Queensland, mostly fair-skinned adults)",
               "isic-archive": "the ISIC Archive outside HAM10000 (mostly MSK, New York)"}


def card_test_sets(dataset: str, options: dict[str, Any]) -> list[str]:
    """The datasets whose held-out test split a card scores: the dataset, or each source of a merged one (so each
    population's figures stand on their own)."""
    if dataset != "merged":
        return [dataset]
    return [s["dataset"] for s in options.get("sources", [])]


def limitations(test_sets: Sequence[str]) -> list[str]:
    """The card's limitations; the second names the training populations."""
    names = " and ".join(POPULATIONS.get(d, d) for d in test_sets)
    population = (f"Trained on {names}; performance on other skin types, devices and clinics is lower (see the "
                  "external PH2 figures).")
    return [LIMITATIONS[0], population, *LIMITATIONS[1:]]


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return f"{os.cpu_count()} cores, {cpu}"


def _compressed_copy(model_file: Path, target: Path, weights: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Write ``target`` with compressed weights; returns what was written."""
    blob = torch.load(model_file, map_location="cpu", weights_only=False)
    blob["state_dict"] = compress_state(blob["state_dict"], weights)
    blob["extra"] = {**blob.get("extra", {}), **extra, "weights_format": weights}
    torch.save(blob, target)
    return blob


def _latency_ms(model_dir: Path, repeats: int = 20) -> float:
    """Median wall time of one ``Predictor.predict`` call on one image (batch 1, the stored TTA)."""
    import numpy as np
    from PIL import Image

    from lesionlab.serving.predictor import Predictor

    predictor = Predictor.load(model_dir)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (450, 600, 3), dtype=np.uint8))
    predictor.predict([img])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.predict([img])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def evaluate_for_card(model_dir: Path, dataset: str, data_root: str | Path, thresholds: dict[str, float],
                      lesion_of: dict[str, str], n_boot: int, positive: str | None = None,
                      max_samples: int | None = None) -> dict:
    """Evaluate the packaged model on ``dataset`` (seen images excluded) and summarise it with CIs."""
    from lesionlab.engine.evaluate import evaluate_run

    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate_run(model_dir, DataConfig(dataset=dataset, root=str(data_root), max_samples=max_samples),
                              out_dir=tmp,
                              exclude_seen=True, progress=False)
        preds = pd.read_csv(Path(tmp) / "predictions.csv", dtype={"image_id": str})
        calibration = json.loads((Path(tmp) / "metrics.json").read_text()).get("ece")
    names = [c.removeprefix("p_") for c in preds.columns if c.startswith("p_")]
    lesions = [lesion_of.get(i, i) for i in preds["image_id"]]  # one image per lesion where the id is unknown
    summary = card_metrics(preds, names, thresholds, lesions, n_boot=n_boot, positive=positive)
    summary.update({"dataset": dataset, "excluded_seen_images": result.excluded, "ece": calibration})
    return summary


def _package_member(run_dir: Path, target: Path, weights: str, name: str, data_root: str | Path,
                    ood: str | None = None) -> dict[str, Any]:
    """One model of a release in ``target``: compressed ``model.pt``, its ONNX export (int8 weights too with
    ``weights=int8``) and ``splits.csv`` (the images it trained and was calibrated on, refused by ``evaluate``);
    returns the model file's contents as first written (the OOD refit below changes only its detector).

    With int8 weights the OOD detector is fitted again on the compressed model's features (training lesions,
    threshold on validation lesions, as in training), so the flag matches the weights that ship; ``ood`` refits it
    with another method (e.g. ``knn-tiny`` for the members of an ensemble under a size budget)."""
    from lesionlab.serving.export import export_run

    target.mkdir(parents=True, exist_ok=True)
    splits = pd.read_csv(run_dir / "splits.csv", dtype={"image_id": str, "lesion_id": str})
    splits[["image_id", "lesion_id", "split"]].to_csv(target / "splits.csv", index=False)
    blob = _compressed_copy(run_dir / "model.pt", target / "model.pt", weights, {"released_as": name})
    stored = blob.get("ood")
    if (weights == "int8" and stored) or ood:
        from lesionlab.engine.ood import fit_ood_run

        shutil.copy(run_dir / "config.yaml", target / "config.yaml")  # how to re-create its data and split
        fit_ood_run(target, ood or stored["method"], (stored or {}).get("coverage"), str(data_root))
    export_run(target, target / "model.onnx")
    if weights == "int8":
        _int8_onnx(target)
    return blob


def _int8_onnx(member: Path, atol: float = 0.02) -> None:
    """Store the ONNX weights as int8 too, and check the graph still predicts like the (int8) PyTorch model."""
    from lesionlab.serving.model_loading import load_torch
    from lesionlab.serving.onnx import OnnxExportError, OnnxModule, check_parity
    from lesionlab.serving.onnx_weights import int8_weights

    int8_weights(member / "model.onnx")
    model, prep, _ = load_torch(member / "model.pt")
    diff = check_parity(model, OnnxModule(member / "model.onnx"),
                        torch.randn(3, 3, prep.image_size, prep.image_size, generator=torch.Generator().manual_seed(0)))
    if diff > atol:
        raise OnnxExportError(f"the int8 ONNX graph of {member} disagrees with the PyTorch model: max |Δprob| "
                              f"{diff:.2e} > {atol}")


def _relink_calibration(out: Path, sources: Sequence[Path]) -> None:
    """A refit's ``train.calibration_from`` names its train-only run by a path on the machine that trained it; when
    that run is a member of this release, point at the packaged member instead (relative to each config)."""
    import yaml

    where = {str(src.resolve()): i for i, src in enumerate(sources)}
    for config in [out / "config.yaml", *sorted(out.glob("members/*/config.yaml"))]:
        data = yaml.safe_load(config.read_text())
        source = (data.get("train") or {}).get("calibration_from")
        member = where.get(str(Path(source).resolve())) if source else None
        if member is not None:
            data["train"]["calibration_from"] = os.path.relpath(out / "members" / str(member), config.parent)
            config.write_text(yaml.safe_dump(data, sort_keys=False))


def _release_members(run_dir: Path, out: Path, weights: str, name: str, data_root: str | Path,
                     ood: str | None = None) -> tuple[Path, dict[str, float], int]:
    """Package a run (or each member of an ensemble folder under ``members/i/``); returns (a packaged model.pt with
    the release's classes and calibration, the decision thresholds, the number of members)."""
    manifest = manifest_path(run_dir)
    if manifest is None:
        blob = _package_member(run_dir, out, weights, name, data_root, ood)  # refitting OOD changes no threshold
        return out / "model.pt", dict(blob["preprocessing"].get("thresholds") or {}), 1
    data = read_manifest(manifest)
    sources = [m if m.is_dir() else m.parent for m in data["members"]]
    tests = [frozenset(pd.read_csv(s / "splits.csv", dtype={"image_id": str}).query("split == 'test'")["image_id"])
             for s in sources]
    if len(set(tests)) > 1:
        raise ValueError(f"{run_dir}: its members hold out different test splits; a release's card scores one held-out "
                         "test split, so every member must share it")
    targets = [out / "members" / str(i) for i in range(len(sources))]
    for source, target in zip(sources, targets, strict=True):
        _package_member(source, target, weights, name, data_root, ood)
    _relink_calibration(out, sources)
    keep = {k: v for k, v in data.items() if k not in ("format", "members", "weights", "thresholds")}
    common = {"weights": data["weights"], "thresholds": data.get("thresholds"), "extra": {**keep, "name": name}}
    write_manifest(out, [t / "model.pt" for t in targets], **common)
    (out / "onnx").mkdir(exist_ok=True)  # the same ensemble served from the ONNX files: `lesionlab serve NAME/onnx`
    write_manifest(out / "onnx", [t / "model.onnx" for t in targets], **common)
    seen_union(targets).to_csv(out / "splits.csv", index=False)
    return targets[-1] / "model.pt", dict(data.get("thresholds") or {}), len(targets)


def seen_union(members: Sequence[Path]) -> pd.DataFrame:
    """One row per image of the members' ``splits.csv``: ``train`` where any member trained on it, else ``val`` where
    any validated on it, else ``test`` (held out by all): the images ``evaluate`` refuses for the whole release."""
    frames = [pd.read_csv(m / "splits.csv", dtype={"image_id": str, "lesion_id": str}) for m in members]
    rank = {"train": 0, "val": 1, "test": 2}
    both = pd.concat(frames, ignore_index=True)
    both = both.assign(rank=both["split"].map(rank)).sort_values(["image_id", "rank"], kind="stable")
    first = both.drop_duplicates("image_id").set_index("image_id")
    order = frames[-1]["image_id"].tolist() + sorted(set(first.index) - set(frames[-1]["image_id"]))
    return first.loc[order, ["lesion_id", "split"]].reset_index()[["image_id", "lesion_id", "split"]]


def _member_summaries(run_dir: Path) -> list[dict[str, Any]]:
    """Each member's recipe and data, for the card (one entry for a single run)."""
    from lesionlab.engine.core.run_data import member_dirs

    out = []
    for source in member_dirs(run_dir):
        cfg = load_run_config(source / "config.yaml")
        counts = pd.read_csv(source / "splits.csv")["split"].value_counts()
        timings = json.loads((source / "timings.json").read_text()) if (source / "timings.json").is_file() else {}
        out.append({"run": source.name, "backbone": cfg.model.backbone, "image_size": cfg.data.image_size,
                    "epochs": cfg.train.epochs, "seed": cfg.train.seed, "trained_on": cfg.train.fit_on,
                    "training_images": int(counts.get("train", 0)),
                    "fit_minutes": round(timings.get("fit", float("nan")) / 60, 1)})
    return out


def _populations(run_dir: Path, test_sets: Sequence[str]) -> dict[str, Any]:
    """Several training populations: each one's image count and its validation figures (from the member that kept
    the validation split, ``val_by_source.json``); nothing for one population."""
    if len(test_sets) < 2:
        return {}
    from lesionlab.engine.core.run_data import member_dirs

    members = member_dirs(run_dir)
    summary = json.loads((members[0] / "data_summary.json").read_text()) if (
        members[0] / "data_summary.json").is_file() else {}
    kept_val = [m / "val_by_source.json" for m in members if (m / "val_by_source.json").is_file()]
    validation: dict[str, Any] = json.loads(kept_val[0].read_text()) if kept_val else {}
    keep = ("n", "balanced_accuracy", "auc_macro", "mel_auc", "priority1_sensitivity", "priority1_specificity")
    return {"populations": {d: {"images": (summary.get("sources") or {}).get(d),
                                "validation": {k: v for k, v in validation.get(d, {}).items() if k in keep} or None}
                            for d in test_sets},
            "source_shortcut_balanced_accuracy": (summary.get("source_check") or {}).get("balanced_accuracy")}


def _check_replaceable(out: Path) -> None:
    """``out`` may be empty, missing or an earlier release (a folder with ``card.json``), which the new release
    replaces whole once it is complete (a stale ``model.pt`` would shadow a new ensemble); any other non-empty folder
    is refused rather than deleted."""
    if out.is_dir() and any(out.iterdir()) and not (out / "card.json").is_file():
        raise FileExistsError(f"{out} is not empty and holds no earlier release (no card.json): choose an empty "
                              "or new --out folder")


def _trained_on(out: Path, extra: dict[str, Any], members: Sequence[dict[str, Any]]) -> str:
    if len(members) == 1:
        return "the training split" + (" + validation split" if extra.get("train_on_val") else "")
    manifest = read_manifest(out / "ensemble.json")
    roles = manifest.get("roles") or [
        f"{m['backbone']} {m['image_size']} px, seed {m['seed']}, {m['training_images']} training images"
        for m in members]
    kind = "an equal-weight" if len(set(manifest["weights"].round(6))) == 1 else "a weighted"
    return f"{kind} ensemble of {len(members)} models: " + "; ".join(roles)


def _calibrated_on(out: Path, extra: dict[str, Any], n_members: int) -> str:
    if n_members > 1:
        point = read_manifest(out / "ensemble.json").get("operating_point") or (
            "the train-only member's, chosen on its validation split")
        return (f"each member's temperature on its validation split; the triage thresholds and unsure threshold: "
                f"{point}")
    return ("the validation split, by the train-only sibling run of the same recipe (temperature, triage "
            "thresholds, unsure threshold)" if extra.get("train_on_val")
            else "the validation split (temperature, triage thresholds, unsure threshold)")


def package_release(run_dir: str | Path, out_dir: str | Path, *, name: str, data_root: str | Path,
                    external: Sequence[str] = (), command: str = "", n_boot: int = 1000,
                    max_samples: int | None = None, weights: str = "fp16", ood: str | None = None) -> dict:
    """Write ``out_dir`` (model.pt, model.onnx, splits.csv, config.yaml, card.json) from ``run_dir``.

    ``run_dir`` may be an ensemble folder (``ensemble.json``, e.g. a refit job's two fits): each member is packaged
    under ``members/i/``, with ``ensemble.json`` (PyTorch) and ``onnx/ensemble.json`` (ONNX) beside them.
    ``weights`` is the stored weight format (:data:`lesionlab.models.compression.WEIGHT_FORMATS`: ``fp16`` or
    ``int8``, the ONNX weights too); the card's figures come from the packaged, compressed model. ``max_samples``
    limits the evaluation sets (tests only: a card's figures use every image). ``ood`` refits every member's OOD
    detector with that method (default: int8 releases refit the stored method; fp16 ones keep the stored detector)."""
    WEIGHT_FORMATS.get(weights)  # an unknown format fails before anything is written
    if ood is not None:
        from lesionlab.inference.ood import OOD_METHODS

        OOD_METHODS.get(ood)  # so does an unknown OOD method
    run_dir, final = Path(run_dir).resolve(), Path(out_dir).resolve()
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a trained run or ensemble folder (no config.yaml)")
    if final == run_dir or final in run_dir.parents:
        raise ValueError(f"--out {final} would hold the run it packages ({run_dir}): choose another folder")
    _check_replaceable(final)
    out = final.with_name(f".{final.name}.partial")  # built beside it, swapped in only when complete
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cfg = load_run_config(run_dir / "config.yaml")
    shutil.copy(run_dir / "config.yaml", out / "config.yaml")
    members = _member_summaries(run_dir)
    model_file, thresholds, n_members = _release_members(run_dir, out, weights, name, data_root, ood)
    blob = torch.load(model_file, map_location="cpu", weights_only=False)
    prep, extra = blob["preprocessing"], blob.get("extra", {})
    splits = pd.read_csv(out / "splits.csv", dtype={"image_id": str, "lesion_id": str})
    lesion_of = dict(zip(splits["image_id"], splits["lesion_id"], strict=True))
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").is_file() else {}
    test_sets = card_test_sets(cfg.data.dataset, cfg.data.options)
    evaluations = {f"{dataset}-test": evaluate_for_card(out, dataset, data_root, thresholds, lesion_of, n_boot,
                                                        positive="mel", max_samples=max_samples or cfg.data.max_samples)
                   for dataset in test_sets}
    for dataset in external:
        evaluations[dataset] = evaluate_for_card(out, dataset, data_root, thresholds, lesion_of, n_boot,
                                                 positive="mel", max_samples=max_samples)
    infos = [DATASET_INFO.get(d) for d in test_sets if d in DATASET_INFO]
    counts = splits["split"].value_counts().to_dict()
    card = {
        "name": name,
        # members of other backbones (an ensemble may mix them): all named, in member order
        "architecture": {"backbone": " + ".join(dict.fromkeys(m["backbone"] for m in members)),
                         "pretrained": str(cfg.model.pretrained),
                         "head": cfg.model.head, "colour_constancy": cfg.model.colour_constancy,
                         "input": {"image_size": prep["image_size"], "crop": prep["crop"], "tta": prep["tta"]},
                         "classes": list(prep["class_names"]), "taxonomy": prep["taxonomy"],
                         "weights_format": weights, "members": n_members},
        "training": {"dataset": " + ".join(test_sets),
                     "licence": "; ".join(dict.fromkeys(i.licence for i in infos)) or None,
                     "citation": "; ".join(dict.fromkeys(i.citation for i in infos)) or None,
                     **_populations(run_dir, test_sets),
                     "images": {k: int(v) for k, v in counts.items()},
                     "trained_on": _trained_on(out, extra, members),
                     "calibrated_on": _calibrated_on(out, extra, n_members),
                     "members": members,
                     "held_out": "the test split: lesion-disjoint, never used to train, choose or calibrate",
                     "epochs": cfg.train.epochs, "best_epoch": extra.get("best_epoch"),
                     "command": command, "fit_minutes": round(timings.get("fit", float("nan")) / 60, 1),
                     "machine": _machine(), "seed": cfg.train.seed},
        "calibration": {"temperature": prep.get("temperature"), "unsure_threshold": prep.get("unsure_threshold")},
        "triage_operating_point": {
            "rule": f"priority-1 class thresholds chosen on validation for sensitivity >= "
                    f"{cfg.eval.triage_sensitivity}", "thresholds": thresholds},
        "evaluations": evaluations,
        "latency_ms_batch1": round(_latency_ms(out), 1),
        "files_mb": {str(p.relative_to(out)): round(p.stat().st_size / 2**20, 2) for p in sorted(out.rglob("*"))
                     if p.is_file()},
        "total_mb": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 2),
        "intended_use": INTENDED_USE,
        "limitations": limitations(test_sets),
        "licence_note": "Model weights derived from CC BY-NC 4.0 data: non-commercial use only.",
    }
    (out / "card.json").write_text(json.dumps(card, indent=2, default=float))
    if final.exists():  # an earlier release (checked above): replaced whole, so none of its files survives
        shutil.rmtree(final)
    out.rename(final)
    return card


__all__ = ["INTENDED_USE", "LIMITATIONS", "POPULATIONS", "card_test_sets", "evaluate_for_card", "limitations",
           "package_release"]
