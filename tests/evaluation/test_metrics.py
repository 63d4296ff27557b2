"""classification_metrics against scikit-learn and the official ISIC challenge scorer."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from isic_challenge_scoring import metrics as isic
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

from lesionlab.evaluation.metrics import (
    MetricWarning,
    PredictionAccumulator,
    balanced_accuracy,
    classification_metrics,
    specificity_per_class,
)

TOL = 1e-6

# (seed, samples, classes)
RANDOM_CASES = [(0, 40, 2), (1, 60, 3), (2, 200, 5), (3, 313, 7), (4, 500, 8), (5, 97, 8)]


def random_predictions(seed: int, n: int, n_cls: int, absent: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Labels covering every class except ``absent``, and informative but imperfect probabilities."""
    rng = np.random.default_rng(seed)
    allowed = np.array([c for c in range(n_cls) if c not in absent])
    y = rng.choice(allowed, size=n)
    y[: len(allowed)] = allowed  # every allowed class occurs at least once
    rng.shuffle(y)
    probs = rng.dirichlet(np.ones(n_cls), size=n)
    probs[np.arange(n), y] += rng.uniform(0, 0.6, size=n)  # signal, so metrics are not all ~chance
    probs /= probs.sum(axis=1, keepdims=True)
    return y, probs


def names(n_cls: int) -> list[str]:
    return [f"c{i}" for i in range(n_cls)]


def isic_frames(y: np.ndarray, probs: np.ndarray,
                class_names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Truth, prediction and weight tables in the form the ISIC scorer takes."""
    index = pd.Index([f"ISIC_{i:07d}" for i in range(len(y))], name="image")
    truth = pd.DataFrame(np.eye(len(class_names))[y], columns=class_names, index=index)
    pred = pd.DataFrame(probs, columns=class_names, index=index)
    return truth, pred, pd.Series(1.0, index=index)


@pytest.mark.parametrize(("seed", "n", "n_cls"), RANDOM_CASES)
def test_matches_sklearn(seed: int, n: int, n_cls: int) -> None:
    y, probs = random_predictions(seed, n, n_cls)
    pred = probs.argmax(axis=1)
    m = classification_metrics(y, probs, names(n_cls))
    labels = list(range(n_cls))

    assert m["n"] == n
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=TOL)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=TOL)
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    for kind in ("macro", "weighted", "micro"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average=kind, zero_division=0.0)
        assert m[kind]["precision"] == pytest.approx(p, abs=TOL), kind
        assert m[kind]["recall"] == pytest.approx(r, abs=TOL), kind
        assert m[kind]["f1"] == pytest.approx(f, abs=TOL), kind
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0.0)
    for c, name in enumerate(names(n_cls)):
        pc = m["per_class"][name]
        assert pc["precision"] == pytest.approx(p[c], abs=TOL)
        assert pc["recall"] == pytest.approx(r[c], abs=TOL)
        assert pc["f1"] == pytest.approx(f[c], abs=TOL)
        assert pc["support"] == s[c]
        assert pc["auc"] == pytest.approx(roc_auc_score(y == c, probs[:, c]), abs=TOL)
    # binary: sklearn scores class 1, and class 0's one-vs-rest AUC is the same number
    expected_macro_auc = (roc_auc_score(y, probs[:, 1]) if n_cls == 2
                          else roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["auc_macro"] == pytest.approx(expected_macro_auc, abs=TOL)
    for k in (2, 3):
        if k < n_cls:
            assert m[f"top{k}_accuracy"] == pytest.approx(top_k_accuracy_score(y, probs, k=k, labels=labels), abs=TOL)
        else:
            assert f"top{k}_accuracy" not in m


@pytest.mark.parametrize(("seed", "n", "n_cls"), RANDOM_CASES)
def test_specificity_matches_multilabel_confusion(seed: int, n: int, n_cls: int) -> None:
    y, probs = random_predictions(seed, n, n_cls)
    m = classification_metrics(y, probs, names(n_cls))
    mcm = multilabel_confusion_matrix(y, probs.argmax(axis=1), labels=list(range(n_cls)))  # [[tn, fp], [fn, tp]]
    tn, fp = mcm[:, 0, 0].astype(float), mcm[:, 0, 1].astype(float)
    spec = tn / (tn + fp)
    support = np.bincount(y, minlength=n_cls)
    for c, name in enumerate(names(n_cls)):
        assert m["per_class"][name]["specificity"] == pytest.approx(spec[c], abs=TOL)
    assert m["macro"]["specificity"] == pytest.approx(spec.mean(), abs=TOL)
    assert m["weighted"]["specificity"] == pytest.approx(np.average(spec, weights=support), abs=TOL)
    assert m["micro"]["specificity"] == pytest.approx(tn.sum() / (tn.sum() + fp.sum()), abs=TOL)


@pytest.mark.parametrize(("seed", "n", "n_cls"), RANDOM_CASES)
def test_matches_isic_challenge_scorer(seed: int, n: int, n_cls: int) -> None:
    y, probs = random_predictions(seed, n, n_cls)
    cls = names(n_cls)
    truth, pred, weights = isic_frames(y, probs, cls)
    m = classification_metrics(y, probs, cls)
    assert m["balanced_accuracy"] == pytest.approx(isic.balanced_multiclass_accuracy(truth, pred, weights), abs=TOL)
    aucs = [isic.auc(truth[c], pred[c], weights) for c in cls]
    for c, expected in zip(cls, aucs, strict=True):
        assert m["per_class"][c]["auc"] == pytest.approx(expected, abs=TOL)
    assert m["auc_macro"] == pytest.approx(np.mean(aucs), abs=TOL)


# (seed, samples, classes, absent classes)
ABSENT_CASES = [(0, 80, 3, (0,)), (1, 150, 5, (2,)), (2, 300, 7, (6,)), (3, 300, 8, (3, 7))]


@pytest.mark.parametrize(("seed", "n", "n_cls", "absent"), ABSENT_CASES)
def test_absent_class_warns_and_is_skipped(seed: int, n: int, n_cls: int, absent: tuple[int, ...]) -> None:
    y, probs = random_predictions(seed, n, n_cls, absent=absent)
    cls = names(n_cls)
    with pytest.warns(MetricWarning) as record:
        m = classification_metrics(y, probs, cls)
    warned = " ".join(str(w.message) for w in record if issubclass(w.category, MetricWarning))
    present = [c for c in range(n_cls) if c not in absent]
    for c in absent:
        assert repr(cls[c]) in warned
        assert np.isnan(m["per_class"][cls[c]]["auc"])
        assert np.isnan(m["per_class"][cls[c]]["recall"])
        assert m["per_class"][cls[c]]["support"] == 0
    for c in present:
        assert np.isfinite(m["per_class"][cls[c]]["auc"])
        assert np.isfinite(m["per_class"][cls[c]]["recall"])
    assert np.isfinite(m["balanced_accuracy"])
    assert np.isfinite(m["auc_macro"])

    truth, pred, weights = isic_frames(y, probs, cls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the scorer divides 0/0 for the absent class
        isic_bacc = isic.balanced_multiclass_accuracy(truth, pred, weights)
    assert m["balanced_accuracy"] == pytest.approx(isic_bacc, abs=TOL)
    # the scorer cannot compute AUC for a class with no positives; it is skipped from the mean
    isic_auc = np.mean([isic.auc(truth[cls[c]], pred[cls[c]], weights) for c in present])
    assert m["auc_macro"] == pytest.approx(isic_auc, abs=TOL)
    recalls = [np.mean(probs[y == c].argmax(axis=1) == c) for c in present]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls), abs=TOL)
    assert m["macro"]["recall"] == pytest.approx(np.mean(recalls), abs=TOL)


# confusion matrix (rows = truth, columns = prediction) and specificity TN / (TN + FP) worked out by hand
HAND_CASES = [
    (
        [[4, 1, 0], [2, 3, 1], [0, 1, 2]],
        # c0: TN = 14-4-2-1 = 7, FP = 2; c1: TN = 14-3-2-3 = 6, FP = 2; c2: TN = 14-2-1-1 = 10, FP = 1
        [7 / 9, 6 / 8, 10 / 11],
        23 / 28,
    ),
    (
        [[5, 0], [2, 3]],
        [3 / 5, 5 / 5],
        8 / 10,
    ),
    (
        [[2, 0, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 2, 0]],  # class 3 is never predicted
        # c0: TN = 10-2-1-0 = 7, FP = 1; c1: TN = 10-1-0-1 = 8, FP = 0; c2: TN = 10-3-3-1 = 3, FP = 3;
        # c3: TN = 10-0-0-2 = 8, FP = 0
        [7 / 8, 8 / 8, 3 / 6, 8 / 8],
        26 / 30,
    ),
]


def predictions_from_confusion(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    y, pred = [], []
    for t, row in enumerate(cm):
        for p, count in enumerate(row):
            y += [t] * count
            pred += [p] * count
    n_cls = len(cm)
    probs = np.full((len(y), n_cls), 0.1 / n_cls)
    probs[np.arange(len(y)), pred] += 0.9
    return np.array(y), probs


@pytest.mark.parametrize(("cm", "expected", "micro"), HAND_CASES)
def test_specificity_by_hand(cm: list[list[int]], expected: list[float], micro: float) -> None:
    np.testing.assert_allclose(specificity_per_class(np.array(cm)), expected, atol=TOL)
    y, probs = predictions_from_confusion(cm)
    m = classification_metrics(y, probs, names(len(cm)), topk=())
    assert m["confusion_matrix"] == cm
    got = [m["per_class"][c]["specificity"] for c in names(len(cm))]
    np.testing.assert_allclose(got, expected, atol=TOL)
    assert m["macro"]["specificity"] == pytest.approx(np.mean(expected), abs=TOL)
    assert m["micro"]["specificity"] == pytest.approx(micro, abs=TOL)


@pytest.mark.parametrize(("cm", "expected"), [
    ([[4, 1, 0], [2, 3, 1], [0, 1, 2]], (4 / 5 + 3 / 6 + 2 / 3) / 3),
    ([[5, 0], [2, 3]], (1 + 3 / 5) / 2),
    ([[3, 0, 0], [0, 0, 0], [1, 1, 2]], (1 + 2 / 4) / 2),  # class 1 absent: left out, not scored 0
])
def test_balanced_accuracy_by_hand(cm: list[list[int]], expected: float) -> None:
    y, probs = predictions_from_confusion(cm)
    assert balanced_accuracy(y, probs.argmax(axis=1), len(cm)) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize(("y", "probs", "class_names", "match"), [
    ([0, 1, 2], np.full((4, 3), 1 / 3), names(3), "probs must be"),
    ([0, 1, 2], np.full(3, 1 / 3), names(3), "probs must be"),
    ([[0], [1]], np.full((2, 2, 2), 0.5), names(2), "probs must be"),
    ([], np.zeros((0, 3)), names(3), "empty"),
    ([0, -1, 2], np.full((3, 3), 1 / 3), names(3), "labels must lie"),
    ([0, 1, 3], np.full((3, 3), 1 / 3), names(3), "labels must lie"),
    ([0, 1, 2], np.full((3, 3), 1 / 3), names(2), "class names"),
])
def test_input_validation(y: list, probs: np.ndarray, class_names: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_metrics(np.array(y), probs, class_names)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_accumulator_equals_one_shot(batch: int) -> None:
    y, probs = random_predictions(11, 150, 7)
    acc = PredictionAccumulator(names(7))
    for start in range(0, len(y), batch):
        acc.update(y[start:start + batch], probs[start:start + batch])
    assert acc.compute() == classification_metrics(y, probs, names(7))
    acc.reset()
    acc.update(y[:10], probs[:10])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)  # 10 samples need not cover all 7 classes
        assert acc.compute()["n"] == 10
