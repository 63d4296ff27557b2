"""``train.refit_ensemble``: a refit job's two fits shipped as one equal-weight ensemble.

The train-only run and its refit on training + validation lesions are two models of one recipe that saw different
data, so their averaged probabilities are a 2-member ensemble for no extra training. The ensemble folder
(:func:`lesionlab.engine.runs_ensemble.ensemble_runs`) holds ``ensemble.json`` (members as ``../RUN/model.pt``, so the
three folders move together), the refit's config and the one look at the test split. Its triage thresholds and unsure
threshold are the train-only run's, chosen on that run's validation split, exactly as the refit ships them: no
validation lesion is left that neither member trained on.
"""

from __future__ import annotations

from lesionlab.engine.runs_ensemble import ensemble_runs
from lesionlab.runs import TrainResult

ROLES = ("train-only run (picks the epoch; calibrates both)", "refit on training + validation lesions")


def ensemble_of_fits(sibling: TrainResult, refit: TrainResult, name: str, *, test: bool = True) -> TrainResult:
    """Write ``{name}-ensemble-STAMP/`` beside the refit; with ``test``, evaluate it once on the held-out test split
    and write its report (``report.html``)."""
    return ensemble_runs([sibling.run.root, refit.run.root], refit.run.root.parent, f"{name}-ensemble",
                         thresholds_from=refit.run.root, roles=ROLES, test=test,
                         title=f"LesionLab run: {name} (train-only run + refit, one ensemble)",
                         best_epoch=int(sibling.metrics.get("best_epoch", 0)))


__all__ = ["ROLES", "ensemble_of_fits"]
