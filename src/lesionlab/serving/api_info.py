"""What ``GET /v1/model`` says about the served model: classes, input, calibration per member, the triage operating
point with its test figures, the card's test metrics, the inference settings — for single runs, ensembles and
released models alike (a released model's facts come from its ``card.json``)."""

from __future__ import annotations

from dataclasses import asdict
from importlib import metadata as importlib_metadata
from typing import Any

from lesionlab.config.serving import ServeConfig
from lesionlab.data.taxonomy import triage_priority
from lesionlab.inference.ood import summary as ood_summary
from lesionlab.serving.metadata import MAX_AGE, SEXES, SITES
from lesionlab.serving.model_loading import builtin_metrics

NOTICE = ("Decision support, not a diagnosis: LesionLab is research software. A clinician must make every "
          "diagnostic and treatment decision.")
CALIBRATION_METHOD = "temperature scaling, fitted on the validation split (probabilities = softmax(logits / T))"


def version() -> str:
    try:
        return importlib_metadata.version("lesionlab")
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover - source tree without install
        return "unknown"


def model_info(predictor: Any, cfg: ServeConfig, inference: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of ``GET /v1/model``."""
    card, prep = predictor.card, predictor.prep
    released = card.model_card if card else None
    metrics = own_metrics(card)
    return {
        "name": card.name if card else "model",
        "version": {"lesionlab": version(), "model_sha256": card.sha256 if card else "unknown"},
        "backend": predictor.backend,
        "classes": [{"code": c, "description": predictor.describe(c), "triage_priority": triage_priority(c)}
                    for c in predictor.class_names],
        "input": {"image_size": prep.image_size, "crop": prep.crop, "mean": list(prep.mean), "std": list(prep.std),
                  "tta": prep.tta, "taxonomy": prep.taxonomy},
        "calibration": calibration(predictor),
        "unsure": {"available": predictor.unsure_available, "threshold": prep.unsure_threshold,
                   "rule": predictor.unsure_rule},
        "ood": ood_summary(predictor.ood_detector),
        "quality_gate": asdict(predictor.quality),
        "triage": {"thresholds": dict(prep.thresholds),
                   "operating_point": operating_point(metrics, released, predictor.class_names),
                   "rules": ["operating-threshold: a class reaching its stored threshold raises the priority",
                             "top-1: the priority of the most probable diagnosis"]},
        "heatmap": predictor.heatmap_method,
        "metrics": metrics,
        "model_card": released,
        "training_data": {"dataset": card.dataset if card else None, "licence": card.licence if card else None,
                          "citation": card.citation if card else None,
                          "seen_images_recorded": predictor.seen is not None,  # predictions mark seen_in_training
                          **({"details": card.training} if card and card.training else {})},
        "metadata_fields": {"age": {"min": 0, "max": MAX_AGE}, "sex": list(SEXES), "site": list(SITES),
                            "used_by_model": getattr(predictor.model, "metadata_spec", None) is not None},
        "limits": {"max_request_mb": cfg.max_request_mb, "max_pixels": cfg.max_pixels, "max_batch": cfg.max_batch,
                   "workers": cfg.workers},
        "inference": inference,
        "notice": NOTICE,
    }


def own_metrics(card: Any) -> dict[str, Any] | None:
    """The model's own held-out test figures: the run's ``metrics.json``, else its released card's first
    evaluation (an ensemble's card included); None when neither exists."""
    if card is None:
        return None
    if card.metrics:
        return card.metrics
    return builtin_metrics(card.model_card) if card.model_card else None


def calibration(predictor: Any) -> dict[str, Any]:
    """Per member: its temperature (an ensemble averages its members' temperature-scaled probabilities)."""
    card, model = predictor.card, predictor.model
    temps = list(getattr(model, "temperatures", None) or [predictor.prep.temperature])
    names = [m.get("name", str(i)) for i, m in enumerate(card.members)] if card and card.members else \
        [card.name if card else "model"]
    if len(names) != len(temps):
        names = [str(i) for i in range(len(temps))]
    members = [{"name": n, "temperature": float(t), "calibrated": float(t) != 1.0}
               for n, t in zip(names, temps, strict=True)]
    if card and card.members:
        for entry, member in zip(members, card.members, strict=False):
            entry["metrics"] = member.get("metrics")
    released = (card.model_card or {}) if card else {}
    same = len({m["temperature"] for m in members}) == 1
    return {"method": CALIBRATION_METHOD, "temperature": members[0]["temperature"] if same else None,
            "calibrated": any(m["calibrated"] for m in members), "members": members,
            **({"fitted_on": released["training"]["calibrated_on"]}
               if released.get("training", {}).get("calibrated_on") else {})}


def operating_point(metrics: dict[str, Any] | None, released: dict[str, Any] | None,
                    class_names: tuple[str, ...]) -> dict[str, Any] | None:
    """The triage operating point and its test sensitivity/specificity: a run's ``metrics.json`` states it; a
    released card gives the rule, the thresholds and the priority-1 figures of its own test evaluation."""
    if metrics and metrics.get("triage_operating_point"):
        return metrics["triage_operating_point"]
    if not released or not released.get("triage_operating_point") or not released.get("evaluations"):
        return None
    op = released["triage_operating_point"]
    test_set, ev = next(iter(released["evaluations"].items()))
    figs = ev["figures"]
    point: dict[str, Any] = {"rule": op["rule"], "thresholds": dict(op.get("thresholds") or {}),
                             "chosen_on": "validation", "test_set": test_set,
                             "priority1_images": sum(n for c, n in ev.get("class_counts", {}).items()
                                                     if c in class_names and triage_priority(c) == 1)}
    for key in ("sensitivity", "specificity"):
        fig = figs.get(f"priority1_{key}")
        if fig:
            point[key], point[f"{key}_ci95"] = fig["value"], [fig["lo"], fig["hi"]]
    point["statement"] = statement(point)
    return point


def statement(point: dict[str, Any]) -> str:
    """'rule; <test set> priority-1 sensitivity 0.935 (95% CI 0.893–0.967), specificity ...'."""
    def fig(key: str) -> str:
        if key not in point:
            return "not recorded"
        ci = point.get(f"{key}_ci95")
        return f"{point[key]:.3f}" + (f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")

    thresholds = ", ".join(f"{c} ≥ {t:.3f}" for c, t in point["thresholds"].items())
    return (f"{point['rule']} ({thresholds}); {point['test_set']} priority-1 sensitivity {fig('sensitivity')}, "
            f"specificity {fig('specificity')} ({point['priority1_images']} priority-1 test images)")


__all__ = ["NOTICE", "calibration", "model_info", "operating_point", "own_metrics", "statement", "version"]
