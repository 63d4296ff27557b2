"""OOD detectors judged by held-out source, for the built-in model (issue 27, part 6).

Non-lesion images come in groups by source (:mod:`lesionlab.evaluation.ood_sources`). For every detector candidate
and every group G, the detector is fitted (and, where it has a choice, chosen) without G, its threshold set on the
training/validation lesions only, and it is scored on G: leave-one-group-out. The table reports each group's far-OOD
AUROC (G vs the HAM10000 test lesions) and the worst group, not the mean, beside the share of real lesions flagged
on the HAM10000 test split, PH2 and isic-archive at the detector's threshold.

    OMP_NUM_THREADS=1 python benchmarks/ood_held_out_source.py extract --set sources
    OMP_NUM_THREADS=1 python benchmarks/ood_held_out_source.py extract --set ham10000   # also ph2, isic-archive
    OMP_NUM_THREADS=1 python benchmarks/ood_held_out_source.py evaluate [--out docs/results]
    OMP_NUM_THREADS=1 python benchmarks/ood_held_out_source.py ship      # writes the chosen detector into the built-in

Features (pooled backbone features and logits of each member, identity view, through the members' ONNX exports, as
the server computes them) are cached under ``~/.cache/lesionlab/ood-features/`` keyed by the member file's hash and
the image list, so nothing is computed twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lesionlab.builtin.registry import builtin_dir
from lesionlab.data.canonical import canonicalise
from lesionlab.data.crops import get_crop
from lesionlab.data.images import open_image
from lesionlab.data.transforms import to_model_input

logger = logging.getLogger("ood_held_out_source")

CACHE = Path.home() / ".cache" / "lesionlab" / "ood-features"
LESION_SETS = ("ham10000", "ph2", "isic-archive")
DATA_ROOT: str | None = None  # --data-root; None: LesionLab's usual data root resolution


def member_paths(model_dir: Path) -> list[Path]:
    manifest = json.loads((model_dir / "ensemble.json").read_text())
    return [model_dir / m for m in manifest["members"]]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _session(pt: Path):
    from lesionlab.serving.onnx import load_onnx

    module, prep, _ = load_onnx(pt.with_suffix(".onnx"))
    return module, prep


def _model_input(img, prep) -> np.ndarray:
    img = canonicalise(img, prep.canonical)  # the predictor's chain: canonical acquisition, then the crop
    return np.asarray(get_crop(prep.crop)(img, prep.image_size), dtype=np.uint8)


def _features(module, prep, arrays: list[np.ndarray], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    feats, logits = [], []
    with torch.inference_mode():
        for start in range(0, len(arrays), batch):
            x = torch.from_numpy(np.stack(arrays[start:start + batch])).permute(0, 3, 1, 2)
            f, z = module.forward_with_features(to_model_input(x, prep.mean, prep.std))
            feats.append(f.float().numpy())
            logits.append(z.float().numpy())
    return np.concatenate(feats), np.concatenate(logits)


def _lesion_table(name: str) -> pd.DataFrame:
    from lesionlab.config import DataConfig
    from lesionlab.data.datasets import load_dataset

    cfg = DataConfig(dataset=name) if DATA_ROOT is None else DataConfig(dataset=name, root=DATA_ROOT)
    return load_dataset(cfg).table.reset_index(drop=True)


def cache_file(set_name: str, pt: Path) -> Path:
    """Keyed by the member's ONNX export, which computes the features (not ``model.pt``, which stores the detector)."""
    return CACHE / f"{set_name}-{pt.parent.name}-{_sha(pt.with_suffix('.onnx'))}.npz"


def extract(set_name: str, model_dir: Path, members: list[int] | None = None) -> None:
    """Cache ``(ids, group, features, logits)`` of one image set for each member."""
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = member_paths(model_dir)
    todo = [(i, p) for i, p in enumerate(paths) if (members is None or i in members)
            and not cache_file(set_name, p).is_file()]
    if not todo:
        logger.info("%s: cached", set_name)
        return
    _, prep = _session(todo[0][1])
    t0 = time.time()
    if set_name == "sources":
        from lesionlab.evaluation.ood_sources import source_groups

        ids, groups, arrays = [], [], []
        for g in source_groups():
            for label, img in g.images:
                ids.append(label)
                groups.append(g.name)
                arrays.append(_model_input(img, prep))
    else:
        table = _lesion_table(set_name)
        ids, groups = list(table["image_id"]), [set_name] * len(table)
        arrays = [_model_input(open_image(p), prep) for p in table["path"]]
    logger.info("%s: %d images prepared in %.0f s", set_name, len(arrays), time.time() - t0)
    for i, pt in todo:
        module, prep_i = _session(pt)
        assert (prep_i.image_size, prep_i.crop, prep_i.canonical) == (prep.image_size, prep.crop, prep.canonical)
        t0 = time.time()
        f, z = _features(module, prep_i, arrays)
        np.savez(cache_file(set_name, pt), ids=np.array(ids), groups=np.array(groups), features=f.astype(np.float32),
                 logits=z.astype(np.float32))
        logger.info("%s member %d: %s features in %.0f s", set_name, i, f.shape, time.time() - t0)


@dataclass
class MemberData:
    """One member's cached features: lesion splits (original train/val, HAM test, PH2, isic-archive) and sources."""

    sets: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (features, logits)
    groups: np.ndarray  # group name of each source image
    labels: np.ndarray  # label of each source image
    sources: tuple[np.ndarray, np.ndarray]


def load_member(model_dir: Path, index: int) -> MemberData:
    pt = member_paths(model_dir)[index]
    split_file = model_dir / "members" / "0" / "splits.csv"  # the original split (the refit's val is in its train)
    splits = pd.read_csv(split_file).set_index("image_id")["split"]
    sets = {}
    ham = np.load(cache_file("ham10000", pt))
    which = splits.reindex(ham["ids"]).to_numpy()
    for split, name in (("train", "train"), ("val", "val"), ("test", "ham10000 test")):
        sets[name] = (ham["features"][which == split], ham["logits"][which == split])
    for name in ("ph2", "isic-archive"):
        d = np.load(cache_file(name, pt))
        sets[name] = (d["features"], d["logits"])
    src = np.load(cache_file("sources", pt))
    return MemberData(sets, src["groups"], src["ids"], (src["features"], src["logits"]))


def _unit(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _kth(bank: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    d = torch.cdist(torch.as_tensor(q, dtype=torch.float32), torch.as_tensor(bank, dtype=torch.float32))
    return d.kthvalue(min(k, bank.shape[0]), dim=1).values.numpy().astype(np.float64)


def _bank(f: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    u = _unit(f)
    if len(u) > size:
        u = u[np.sort(np.random.default_rng(seed).choice(len(u), size, replace=False))]
    return np.round(u * 127).astype(np.int8).astype(np.float32) / 127  # as shipped: int8 unit vectors


def _head_input(f: np.ndarray, z: np.ndarray, logits: bool) -> np.ndarray:
    u = _unit(f)
    if not logits:
        return u
    energy = torch.logsumexp(torch.as_tensor(z, dtype=torch.float64), 1).numpy()[:, None]
    return np.hstack([u, energy / 10, z.max(1, keepdims=True) / 10])


def _group_weights(groups: np.ndarray) -> np.ndarray:
    """Every source group weighs the same in total, however many images it has."""
    names, counts = np.unique(groups, return_counts=True)
    per = dict(zip(names, 1.0 / counts, strict=True))
    return np.array([per[g] for g in groups])


def fit_candidate(name: str, train: tuple[np.ndarray, np.ndarray], outliers: tuple[np.ndarray, np.ndarray],
                  out_groups: np.ndarray, data_val: tuple[np.ndarray, np.ndarray]):
    """A scoring function ``(features, logits) -> scores`` (higher = more unusual) per candidate name."""
    f_tr, z_tr = train
    parts = dict(p.split("=") for p in name.split(",")[1:])
    kind = name.split(",")[0]
    if kind == "knn":
        bank, k = _bank(f_tr, int(parts.get("bank", 300))), int(parts.get("k", 10))
        return lambda f, z: _kth(bank, _unit(f), k)
    if kind == "energy":
        return lambda f, z: -torch.logsumexp(torch.as_tensor(z, dtype=torch.float64), 1).numpy()
    if kind == "maha":
        from sklearn.covariance import LedoitWolf
        from sklearn.decomposition import PCA

        pca = PCA(int(parts.get("dim", 64)), random_state=0).fit(_unit(f_tr))
        x = pca.transform(_unit(f_tr))
        mean = x.mean(0)
        prec = LedoitWolf().fit(x).precision_

        def maha(f, z):
            d = pca.transform(_unit(f)) - mean
            return np.einsum("nf,fg,ng->n", d, prec, d)
        return maha
    if kind == "knn-oe":  # the shipped method, fitted by the library
        from lesionlab.inference.ood import fit_knn_oe

        det = fit_knn_oe(train, data_val, outliers, out_groups, bank_size=int(parts.get("bank", 300)),
                         c=float(parts.get("C", 1.0)), use_logits=parts.get("logits", "0") == "1")
        return det.score
    if kind in ("oe", "knn+oe", "ratio"):
        from sklearn.linear_model import LogisticRegression

        logits = parts.get("logits", "0") == "1"
        if kind == "ratio":
            lb, ob = _bank(f_tr, int(parts.get("bank", 300))), _bank(outliers[0], 100000)
            k = int(parts.get("k", 10))
            return lambda f, z: np.log(_kth(lb, _unit(f), k)) - np.log(_kth(ob, _unit(f), 1))
        x = np.vstack([_head_input(f_tr, z_tr, logits), _head_input(*outliers, logits)])
        y = np.r_[np.zeros(len(f_tr)), np.ones(len(outliers[0]))]
        w = np.r_[np.full(len(f_tr), 1.0 / len(f_tr)), _group_weights(out_groups) / len(np.unique(out_groups))]
        head = LogisticRegression(C=float(parts.get("C", 1.0)), max_iter=3000).fit(x, y, sample_weight=w * len(y))
        oe = lambda f, z: head.decision_function(_head_input(f, z, logits))  # noqa: E731
        if kind == "oe":
            return oe
        bank, k = _bank(f_tr, int(parts.get("bank", 300))), int(parts.get("k", 10))
        return ("combine", parts.get("how", "mean"), lambda f, z: _kth(bank, _unit(f), k), oe)
    raise ValueError(name)


def _normaliser(scores_val: np.ndarray, coverage: float):
    med, thr = np.median(scores_val), np.quantile(scores_val, coverage)
    return lambda s: (s - med) / max(thr - med, 1e-12)


def member_scorer(name: str, data: MemberData, keep: np.ndarray, coverage: float):
    """Fit candidate ``name`` on this member's training lesions and the source images ``keep``; return a function
    giving normalised scores (1 = the threshold: the ``coverage`` quantile of the validation lesions)."""
    fitted = fit_candidate(name, data.sets["train"], (data.sources[0][keep], data.sources[1][keep]),
                           data.groups[keep], data.sets["val"])
    val = data.sets["val"]
    if isinstance(fitted, tuple):
        _, how, a, b = fitted
        na, nb = _normaliser(a(*val), 0.5 + coverage / 2), _normaliser(b(*val), 0.5 + coverage / 2)
        combine = np.maximum if how == "max" else (lambda p, q: (p + q) / 2)
        fn = lambda f, z: combine(na(a(f, z)), nb(b(f, z)))  # noqa: E731
    else:
        fn = fitted
    norm = _normaliser(fn(*val), coverage)
    return lambda f, z: norm(fn(f, z))


def logo_table(candidates: list[str], members: list[MemberData], coverage: float) -> pd.DataFrame:
    """Leave-one-group-out: for each candidate and source group, fit without it, score it (ensemble mean of the
    members' normalised scores) against the HAM10000 test lesions; plus an all-groups fit's lesion flag rates."""
    from sklearn.metrics import roc_auc_score

    groups = list(dict.fromkeys(members[0].groups))
    rows = []
    for cand in candidates:
        t0 = time.time()
        for held in [*groups, None]:
            keep = members[0].groups != held
            scorers = [member_scorer(cand, m, keep, coverage) for m in members]

            def ens(set_name=None, mask=None, scorers=scorers):
                out = []
                for m, sc in zip(members, scorers, strict=True):
                    f, z = m.sets[set_name] if set_name else (m.sources[0][mask], m.sources[1][mask])
                    out.append(sc(f, z))
                return np.mean(out, axis=0)

            test = ens("ham10000 test")
            if held is None:
                for name in ("ham10000 test", "ph2", "isic-archive"):
                    s = test if name == "ham10000 test" else ens(name)
                    rows.append({"candidate": cand, "group": name, "kind": "lesions", "n": len(s),
                                 "auroc": np.nan, "flagged": float((s > 1).mean())})
                continue
            mask = members[0].groups == held
            s = ens(mask=mask)
            y = np.r_[np.zeros(len(test)), np.ones(len(s))]
            external = np.r_[ens("ph2"), ens("isic-archive")]  # lesions from other clinics as the negatives
            y_ext = np.r_[np.zeros(len(external)), np.ones(len(s))]
            rows.append({"candidate": cand, "group": held, "kind": "held-out", "n": int(mask.sum()),
                         "auroc": float(roc_auc_score(y, np.r_[test, s])), "flagged": float((s > 1).mean()),
                         "auroc_external": float(roc_auc_score(y_ext, np.r_[external, s]))})
        logger.info("%s: %.0f s", cand, time.time() - t0)
    return pd.DataFrame(rows)


CANDIDATES = {  # name -> what it is (the parameters after the commas)
    "knn,bank=300": "kNN, 10th neighbour, 300-image int8 bank (the previous knn-tiny refitted, Sun et al. 2022)",
    "knn,bank=2000,k=67": "kNN with a 2000-image bank (k scaled with the bank)",
    "energy": "negative free energy of the logits (Liu et al. 2020)",
    "maha,dim=64": "Mahalanobis distance on 64 principal components of the features (Lee et al. 2018)",
    "ratio,bank=300": "kNN distance to lesions over the distance to the nearest outlier image (outlier bank)",
    "oe,C=1": "outlier-exposure head alone: logistic regression, lesions vs non-lesion images (Hendrycks et al. 2019)",
    "oe,C=1,logits=1": "outlier-exposure head on the features and two logit summaries (penultimate + output layer)",
    "knn-oe": "knn-tiny and the outlier-exposure head, each normalised on validation lesions, averaged (shipped)",
    "knn-oe,logits=1": "knn-oe whose head also reads the logit summaries",
    "knn-oe,C=0.1": "knn-oe with a 10x stronger L2 penalty on the head",
    "knn-oe,bank=1000": "knn-oe with a 1000-image bank",
}
CHOSEN = "knn-oe"
COVERAGE = 0.975
# The photographs of issue 27 (a flower, a Chinese palace, Grace Hopper: whole and centre crop) come from these two
# collections. The shipped detector never learns from them, so they stay a held-out photo kind for its tests.
SHIP_HOLD_OUT = ("sklearn photos", "matplotlib photo")
ISSUE_PHOTOS = ("flower.jpg", "china.jpg", "grace_hopper.jpg")


def _logo_cached(cand: str, members: list[MemberData], keys: str, fresh: bool) -> pd.DataFrame:
    path = CACHE / "logo" / f"{hashlib.sha256((cand + keys).encode()).hexdigest()[:16]}.csv"
    if path.is_file() and not fresh:
        cached = pd.read_csv(path)
        if "auroc_external" in cached:
            return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    table = logo_table([cand], members, COVERAGE)
    table.to_csv(path, index=False)
    return table


LESION_LIMIT = 0.04  # the target is <= 5 % on each lesion set; one point of margin for sampling noise (PH2: 200)


def eligible(flags: pd.DataFrame) -> list[str]:
    """Candidates that flag at most ``LESION_LIMIT`` of every real lesion set (the threshold never sees those sets;
    this check decides which candidates may be chosen)."""
    return [c for c in flags.columns if (flags[c] <= LESION_LIMIT).all()]


def nested_choice(held: pd.DataFrame, allowed: list[str]) -> pd.DataFrame:
    """For every group G: among the ``allowed`` candidates, the one with the best worst-group AUROC over the *other*
    groups, and its score on G (selection never sees G's score)."""
    rows = []
    for g in held.index:
        others = held.drop(index=g)[allowed]
        best = others.min().idxmax()
        rows.append({"group": g, "chosen without it": best, "auroc": held.loc[g, best]})
    return pd.DataFrame(rows)


def evaluate(model_dir: Path, out: Path, fresh: bool = False, before: Path | None = None) -> pd.DataFrame:
    """The held-out-source tables (``out``/ood-held-out-source.md and .csv). ``before``: a copy of the model folder
    with the previous detector, shown beside the candidates (default: the detector ``model_dir`` stores now)."""
    members = [load_member(model_dir, i) for i in range(len(member_paths(model_dir)))]
    keys = "|".join(cache_file(s, p).name for p in member_paths(model_dir) for s in ("sources", "ham10000"))
    table = pd.concat([_logo_cached(c, members, keys, fresh) for c in CANDIDATES], ignore_index=True)
    held = table[table.kind == "held-out"].pivot(index="group", columns="candidate", values="auroc")
    held = held.loc[list(dict.fromkeys(members[0].groups)), list(CANDIDATES)]
    flags = table[table.kind == "lesions"].pivot(index="group", columns="candidate", values="flagged")[list(CANDIDATES)]
    allowed = eligible(flags)
    nested = nested_choice(held, allowed)
    caught = table[table.kind == "held-out"].pivot(index="group", columns="candidate", values="flagged")
    caught = caught.loc[held.index, list(CANDIDATES)]
    stored = _stored_scores(before or model_dir, members)
    shipped = _stored_scores(model_dir, members)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "ood-held-out-source.csv", index=False)
    external = None
    if "auroc_external" in table:
        external = table[table.kind == "held-out"].pivot(index="group", columns="candidate",
                                                          values="auroc_external")[list(CANDIDATES)]
    text = _markdown(model_dir, members, held, flags, nested, stored, caught, allowed, shipped, external)
    (out / "ood-held-out-source.md").write_text(text)
    logger.info("worst held-out group AUROC per candidate:\n%s", held.min().round(3).to_string())
    return table


def _stored_scores(model_dir: Path, members: list[MemberData]) -> dict[str, float]:
    """Today's stored detectors (fitted on lesions only, so no fold is needed): AUROC per group, flags per set."""
    from sklearn.metrics import roc_auc_score

    from lesionlab.inference.ood import OODDetector

    def ens(get):
        out = []
        for pt, m in zip(member_paths(model_dir), members, strict=True):
            det = OODDetector.from_dict(json.loads(pt.with_name("model.preprocessing.json").read_text())["ood"])
            out.append(det.normalised(det.score(*get(m))))
        return np.mean(out, axis=0)

    test = ens(lambda m: m.sets["ham10000 test"])
    src = ens(lambda m: m.sources)
    outside = np.r_[ens(lambda m: m.sets["ph2"]), ens(lambda m: m.sets["isic-archive"])]
    result: dict = {"photos": {str(i): float(v) for i, v in zip(members[0].labels, src, strict=True)
                               if i.split(" (")[0] in ISSUE_PHOTOS and ("whole" in i or "centre" in i)}}
    result["method"] = OODDetector.from_dict(json.loads(member_paths(model_dir)[0].with_name(
        "model.preprocessing.json").read_text())["ood"]).method
    for g in dict.fromkeys(members[0].groups):
        s = src[members[0].groups == g]
        result[g] = float(roc_auc_score(np.r_[np.zeros(len(test)), np.ones(len(s))], np.r_[test, s]))
        result[f"caught {g}"] = float((s > 1).mean())
        auroc_outside = float(roc_auc_score(np.r_[np.zeros(len(outside)), np.ones(len(s))], np.r_[outside, s]))
        result["external"] = min(result.get("external", 1.0), auroc_outside)
    for name in ("ham10000 test", "ph2", "isic-archive"):
        result[f"flag {name}"] = float((ens(lambda m, n=name: m.sets[n]) > 1).mean())
    return result


def _markdown(model_dir: Path, members: list[MemberData], held: pd.DataFrame, flags: pd.DataFrame,
              nested: pd.DataFrame, stored: dict, caught: pd.DataFrame, allowed: list[str], shipped: dict,
              external: pd.DataFrame | None = None) -> str:
    import platform

    from lesionlab.evaluation import ood_sources as sources

    m0 = members[0]
    group_n = pd.Series(m0.groups).value_counts()
    lines = ["# OOD detection judged by held-out source (built-in model `" + model_dir.name + "`)", "",
             "Generated by `benchmarks/ood_held_out_source.py evaluate --before DIR` (DIR: a copy of the built-in "
             "folder holding the previous detector, e.g. from `git show 61fef60:src/lesionlab/builtin/...`); the "
             "numbers are in `ood-held-out-source.csv`.", ""]
    chosen_flags = {n: flags.loc[n, CHOSEN] for n in ("ham10000 test", "ph2", "isic-archive")}
    lines += ["## Summary", "",
              f"- **Shipped: `{CHOSEN}`** (kNN, Sun et al. 2022, averaged with a linear outlier-exposure head, "
              f"Hendrycks et al. 2019). Worst held-out group far-OOD AUROC **{held[CHOSEN].min():.3f}** "
              f"({held[CHOSEN].idxmin()}); every one of the {len(held)} groups ≥ 0.95 "
              f"({'met' if held[CHOSEN].min() >= 0.95 else 'NOT met'}). Real lesions flagged: "
              + ", ".join(f"{n} {100 * v:.1f} %" for n, v in chosen_flags.items())
              + f" (≤ 5 % on each: {'met' if max(chosen_flags.values()) <= 0.05 else 'NOT met'})."
              + ("" if external is None else " With the lesions of other clinics (PH2 + isic-archive) as the "
                 f"negatives instead, the worst group is {external[CHOSEN].min():.3f} (before: "
                 f"{stored['external']:.3f})."),
              f"- Before (`{stored['method']}`, fitted on lesions only): worst group AUROC "
              f"{min(stored[g] for g in held.index):.3f}; at its threshold it refused "
              f"{100 * min(stored['caught ' + g] for g in held.index):.0f} % of the worst group and "
              f"{100 * stored['caught sklearn photos']:.0f} % of scikit-learn's photographs; `{CHOSEN}` refuses "
              f"{100 * caught[CHOSEN].min():.0f} % of its worst group ({caught[CHOSEN].idxmin()}) and all of "
              f"{sum(caught[CHOSEN] >= 0.999)} groups when each is held out.",
              "- Chosen by the rule below; choosing without each group (nested) gives a worst group of "
              f"{nested.auroc.min():.3f}.", ""]
    lines += ["| candidate | what |", "|---|---|"] + [f"| `{c}` | {d} |" for c, d in CANDIDATES.items()]
    cols = list(CANDIDATES)
    lines += ["", "## Far-OOD AUROC of each held-out group (vs the 1,503 HAM10000 test lesions)", "",
              "Each cell: the candidate fitted without that group (kNN bank, outlier-exposure head, thresholds), "
              "then scored on it. `before` = the detector shipped before (`--before`), fitted on lesions only, so "
              "there is nothing to hold out.",
              "", "| group | n | before (" + stored["method"] + ") | " + " | ".join(f"`{c}`" for c in cols) + " |",
              "|---|---:|---:|" + "---:|" * len(cols)]
    for g in held.index:
        lines.append(f"| {g} | {group_n[g]} | {stored[g]:.3f} | " + " | ".join(
            ("**" if c == CHOSEN else "") + f"{held.loc[g, c]:.3f}" + ("**" if c == CHOSEN else "") for c in cols)
            + " |")
    worst_stored = min(stored[g] for g in held.index)
    lines.append(f"| **worst group** | | **{worst_stored:.3f}** | " + " | ".join(
        f"**{held[c].min():.3f}** ({held[c].idxmin()})" for c in cols) + " |")
    lines.append("| mean (not the criterion) | | " + f"{np.mean([stored[g] for g in held.index]):.3f} | "
                 + " | ".join(f"{held[c].mean():.3f}" for c in cols) + " |")
    if external is not None:
        lines.append("| worst group against PH2 + isic-archive lesions instead | | " + f"{stored['external']:.3f} | "
                     + " | ".join(f"{external[c].min():.3f} ({external[c].idxmin()})" for c in cols) + " |")
    lines += ["", "## Share of real lesions flagged (threshold from validation lesions only)", "",
              "| lesion set | n | before | " + " | ".join(f"`{c}`" for c in cols) + " |",
              "|---|---:|---:|" + "---:|" * len(cols)]
    ns = {"ham10000 test": len(m0.sets["ham10000 test"][0]), "ph2": len(m0.sets["ph2"][0]),
          "isic-archive": len(m0.sets["isic-archive"][0])}
    for name in ("ham10000 test", "ph2", "isic-archive"):
        lines.append(f"| {name} | {ns[name]} | {100 * stored['flag ' + name]:.1f} % | " + " | ".join(
            f"{100 * flags.loc[name, c]:.1f} %" for c in cols) + " |")
    lines += ["", "## Share of each held-out group refused at the threshold", "",
              "AUROC ranks; a user meets the threshold. Each cell: the share of the held-out group's images scored "
              "above the threshold (fitted without the group).", "",
              "| group | before | " + " | ".join(f"`{c}`" for c in cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    for g in caught.index:
        lines.append(f"| {g} | {100 * stored['caught ' + g]:.0f} % | " + " | ".join(
            f"{100 * caught.loc[g, c]:.0f} %" for c in cols) + " |")
    worst_caught = min(stored["caught " + g] for g in caught.index)
    lines.append(f"| **worst group** | **{100 * worst_caught:.0f} %** | " + " | ".join(
        f"**{100 * caught[c].min():.0f} %**" for c in cols) + " |")
    lines += ["", "## The choice", "",
              f"Rule: the highest worst-group AUROC among the candidates that flag at most {100 * LESION_LIMIT:.0f} % "
              "of every real lesion set (the target is 5 %; one point of margin because PH2 has only 200 images). "
              "Eligible: " + ", ".join(f"`{c}`" for c in allowed) + f". Chosen and shipped: `{CHOSEN}`.", "",
              "### Choosing without the held-out group (nested)", "",
              "For each group G the eligible candidate with the best worst-group AUROC over the other groups is "
              "picked (G's own score is never looked at), then scored on G.", "",
              "| held-out group | chosen without it | AUROC on it |", "|---|---|---:|"]
    lines += [f"| {r.group} | `{r._2}` | {r.auroc:.3f} |" for r in nested.itertuples()]
    lines += [f"| **worst group** | | **{nested.auroc.min():.3f}** |", ""]
    lines += [f"## The shipped detector (`{shipped['method']}` in each member)", "",
              f"`benchmarks/ood_held_out_source.py ship` fits `{CHOSEN}` on every group except "
              + " and ".join(SHIP_HOLD_OUT) + " (the collections of issue 27's photographs, kept as a held-out "
              "photo kind for the tests), and stores it in each member's `model.pt`, ONNX sidecar and `ood.json`.", "",
              "| | before (" + stored["method"] + ") | shipped |", "|---|---:|---:|"]
    for name in ("ham10000 test", "ph2", "isic-archive"):
        lines.append(f"| {name} lesions flagged | {100 * stored['flag ' + name]:.1f} % | "
                     f"{100 * shipped['flag ' + name]:.1f} % |")
    for g in SHIP_HOLD_OUT:
        lines.append(f"| {g} (held out): AUROC / refused | {stored[g]:.3f} / {100 * stored['caught ' + g]:.0f} % | "
                     f"{shipped[g]:.3f} / {100 * shipped['caught ' + g]:.0f} % |")
    for label in shipped["photos"]:
        b, a = stored["photos"][label], shipped["photos"][label]
        lines.append(f"| issue photo {label}: normalised score (> 1 refused) | {b:.2f} "
                     f"({'refused' if b > 1 else 'passes'}) | {a:.2f} ({'refused' if a > 1 else 'passes'}) |")
    lines.append("")
    lines += ["## Sources and sizes", "",
              f"Non-lesion groups: {len(group_n)}, {len(m0.groups)} images. Each photograph appears whole, as its "
              "centre crop and as altered copies (a random crop, then a hue/saturation/brightness change, blur, "
              "grey or a rotation); a group of few files gets more copies (about 24 images per group).", ""]
    for g in sources.source_groups_summary():
        lines.append(f"- **{g[0]}** ({g[1]}, {g[3]} images): {g[2]}")
    lines += ["", f"Lesions: fitted on the {len(m0.sets['train'][0])} training images of the original split, "
              f"thresholds on its {len(m0.sets['val'][0])} validation images (coverage {COVERAGE}); scored on the "
              "HAM10000 test split, PH2 and isic-archive. Features: each member's pooled backbone features "
              "(1,280) and logits, identity view, through its ONNX export, after the predictor's own canonical "
              "chain and crop. The ensemble's score is the mean of the members' normalised scores (flagged "
              "above 1).", "",
              f"Machine: {_cpu()} ({platform.machine()}), 2 cores shared with other work, OMP_NUM_THREADS=1; "
              f"Python {platform.python_version()}. Features of the {sum(len(m0.sets[k][0]) for k in m0.sets)} "
              f"lesion and {len(m0.groups)} non-lesion images take about 10 minutes per member (cached).", "",
              f"Sizes: the shipped detector's state per member is {_state_bytes(model_dir) / 1024:.0f} KiB "
              "(a 300 x 1,280 int8 bank, a 1,280-weight head and four reference numbers), stored twice (`model.pt` "
              "and, base64, the ONNX sidecar); the built-in folder totals "
              f"{sum(f.stat().st_size for f in model_dir.rglob('*') if f.is_file()) / 2**20:.2f} MiB.", "",
              "## Notes and limits", "",
              "- AUROC is against the HAM10000 test lesions. A group holds 24-48 images drawn from 1-9 files, so a "
              "group's figure rests on few distinct scenes; the altered copies widen it but are not new scenes.",
              "- The predictor crops the centre square, so a photograph and its centre crop give the same model "
              "input: issue 27's six images are three distinct inputs.",
              "- Which candidates may be chosen is decided with the PH2 and isic-archive flag rates (the 4 % rule); "
              "no threshold ever sees those sets. Without the margin, `oe,C=1` (worst group 0.992) would be "
              "chosen, at 4.5 % of PH2 and 4.6 % of isic-archive flagged.",
              "- Layers: the penultimate features and two output-layer summaries (energy, top logit) were tried; "
              "the summaries did not help. Intermediate backbone layers were not tried: they would need new ONNX "
              "exports with extra outputs and the same in the eager models.",
              "- A larger bank does not generalise better: at k = 10 a 2,000-image bank is close to odd lesions "
              "(in a first screening on one member, synthetic shapes fell to AUROC 0.446 with k = 10; with k scaled "
              "to 67 the worst group is 0.937), and `knn-oe` with a 1,000-image bank flags 6.5-6.8 % of PH2 and "
              "isic-archive.",
              "- `lesionlab release --ood METHOD` refits members with lesion-only methods; after a new release of the "
              "built-in, run `benchmarks/ood_held_out_source.py extract ...` and `ship` again.", ""]
    return "\n".join(lines)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


def _state_bytes(model_dir: Path) -> int:
    from lesionlab.inference.ood import OODDetector

    det = OODDetector.from_dict(json.loads(member_paths(model_dir)[0].with_name("model.preprocessing.json")
                                           .read_text())["ood"])
    return sum(np.asarray(v).nbytes for v in det.state.values())


def ship(model_dir: Path) -> None:
    """Fit ``CHOSEN`` on every source group for each member and store it in the built-in model (``model.pt``, the
    ONNX sidecar and the member's ``ood.json``)."""
    from lesionlab.inference.ood import fit_knn_oe
    from lesionlab.models.checkpoint import store_ood

    for i, pt in enumerate(member_paths(model_dir)):
        m = load_member(model_dir, i)
        keep = ~np.isin(m.groups, SHIP_HOLD_OUT)
        det = fit_knn_oe(m.sets["train"], m.sets["val"], (m.sources[0][keep], m.sources[1][keep]), m.groups[keep],
                         coverage=COVERAGE)
        if i > 0:
            det.rule += "; this refit also trained on those validation images, so new images exceed it more often"
        store_ood(pt, det.to_dict())
        side = pt.with_name("model.preprocessing.json")
        meta = json.loads(side.read_text())
        meta["ood"] = det.to_dict("base64")
        side.write_text(json.dumps(meta, indent=2))
        summary = {"method": det.method, "threshold": det.threshold, "rule": det.rule, "coverage": det.coverage,
                   "fitted_on": det.fitted_on, "test_images": 0, "test_flagged": None,
                   "outlier_sources": sorted(set(m.groups[keep].tolist())), "held_out_sources": list(SHIP_HOLD_OUT)}
        (pt.parent / "ood.json").write_text(json.dumps(summary, indent=2))
        logger.info("member %d: %s", i, det.rule)
    _update_card(model_dir)


def _update_card(model_dir: Path) -> None:
    """The card's ``ood_detector`` (what ``lesionlab card`` prints) and file sizes, from the stored detectors and the
    cached leave-one-group-out table of ``CHOSEN``."""
    members = [load_member(model_dir, i) for i in range(len(member_paths(model_dir)))]
    shipped = _stored_scores(model_dir, members)
    keys = "|".join(cache_file(s, p).name for p in member_paths(model_dir) for s in ("sources", "ham10000"))
    logo = _logo_cached(CHOSEN, members, keys, fresh=False)
    held = logo[logo.kind == "held-out"].set_index("group")
    first = json.loads((member_paths(model_dir)[0].parent / "ood.json").read_text())
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    card["ood_detector"] = {
        "method": CHOSEN,
        "rule": (f"mean over the {len(members)} members of the normalised {CHOSEN} score (0 = the member's median "
                 f"validation lesion, 1 = its threshold, the {100 * COVERAGE:g}th percentile of its validation "
                 "lesions) > 1"),
        "test_lesions_flagged": round(shipped["flag ham10000 test"], 4),
        "external_lesions_flagged": {n: round(shipped["flag " + n], 4) for n in ("ph2", "isic-archive")},
        "learnt_from": (f"{first['fitted_on']['train_images']} training lesions and "
                        f"{first['fitted_on']['outlier_images']} non-lesion images from "
                        f"{first['fitted_on']['outlier_sources']} offline sources (photographs, textures, scientific "
                        "and clinical images, faces, graphics, synthetic kinds); " + " and ".join(SHIP_HOLD_OUT)
                        + " held out"),
        "benchmark": {"command": "python benchmarks/ood_held_out_source.py evaluate",
                      "far_ood_auroc": (f"{held.auroc.min():.3f} (worst of {len(held)} source groups, each left out "
                                        f"of the fit: {held.auroc.idxmin()}; docs/results/ood-held-out-source.md)"),
                      "far_ood_fpr95": "not measured (the table gives the share refused at the threshold)",
                      "near_ood_auroc": "not measured for this detector"},
    }
    files = sorted(f for f in model_dir.rglob("*") if f.is_file() and f.name != "card.json")
    card["files_mb"] = {str(f.relative_to(model_dir)): round(f.stat().st_size / 2**20, 2) for f in files}
    card_path.write_text(json.dumps(card, indent=2))
    card["total_mb"] = round(sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file()) / 2**20, 2)
    card_path.write_text(json.dumps(card, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract")
    ex.add_argument("--set", required=True, choices=("sources", *LESION_SETS))
    ex.add_argument("--member", type=int, action="append")
    ev = sub.add_parser("evaluate")
    ev.add_argument("--out", default="docs/results")
    ev.add_argument("--fresh", action="store_true", help="recompute the cached leave-one-group-out tables")
    ev.add_argument("--before", type=Path, help="a copy of the model folder holding the previous detector")
    sub.add_parser("ship")
    parser.add_argument("--model", default=None, help="built-in model name (default: the default built-in)")
    parser.add_argument("--data-root", default=None, help="folder holding ham10000/, ph2/ and isic_archive/")
    args = parser.parse_args(argv)
    global DATA_ROOT
    DATA_ROOT = args.data_root
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model_dir = builtin_dir(args.model)
    if args.cmd == "extract":
        extract(args.set, model_dir, args.member)
    elif args.cmd == "evaluate":
        evaluate(model_dir, Path(args.out), args.fresh, args.before)
    else:
        ship(model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
