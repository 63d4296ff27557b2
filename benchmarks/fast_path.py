"""Accuracy vs latency of the built-in model's serving configurations: which members and which test-time views.

For the validation and test splits of the fixed HAM10000 split, every member's logits are computed once for all
eight D4 views (ONNX Runtime, the server's fast path); each configuration — members {both, train-only run, refit} x
TTA {none, flips, d4} — is then scored from them: balanced accuracy, macro AUC and priority-1 sensitivity /
specificity at the stored operating point. Latency is measured on the same machine with the server's
:class:`~lesionlab.serving.fastpath.FastPath`: batch-1 milliseconds (median) and milliseconds per image in batches
of 16. The refit member trained on the validation lesions, so validation figures of configurations that include
it are optimistic (marked). ``--student MODEL`` adds a single model (e.g. the run folder of a ``lesionlab distill``
student) scored the same way at its own temperature and operating point.

The **test-time cascade** row (:mod:`lesionlab.inference.cascade`): both members without TTA on every image, the
other 7 views only where the answer is fragile; its rule is fitted on the validation logits without labels (top-1
and triage agreement with "both, d4" >= ``--agreement``), then scored on both splits; passes per image count the
escalated share. ``--record`` writes the fitted rule into the built-in model's ``ensemble.json`` (the server's
default when a model stores one).

    .venv/bin/python benchmarks/fast_path.py --data-root ../shared/data [--limit 300] [--cache /tmp/fast_path.npz] \
        [--student runs/issue27/distill-builtin-lite2-...] [--agreement 0.985] [--record]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from lesionlab.builtin.registry import builtin_dir
from lesionlab.data.transforms import to_model_input
from lesionlab.evaluation.bootstrap import priority1
from lesionlab.evaluation.cascade_fit import combine, fit_cascade
from lesionlab.inference.tta import get_tta, same_view
from lesionlab.serving.fastpath import CASCADE, FastPath
from lesionlab.serving.predictor import Predictor

POLICIES = ("none", "flips", "d4")
SAMPLE = 64  # test images timed (batch 1 over the first ones; batches of 16 over all)
MEMBER_SETS = {"both": (0, 1), "train-only (0)": (0,), "refit (1)": (1,)}


def view_index(policy: str) -> list[int]:
    """Which of the D4 views a policy uses."""
    d4 = get_tta("d4")
    return [next(i for i, d in enumerate(d4) if same_view(d, v)) for v in get_tta(policy)]


def load_split(root: Path, split: str, limit: int | None, classes: tuple[str, ...]) -> tuple[list[Path], np.ndarray]:
    splits = pd.read_csv(builtin_dir() / "members" / "0" / "splits.csv", dtype=str)
    meta = pd.read_csv(root / "ham10000" / "HAM10000_metadata.csv", dtype=str).set_index("image_id")
    ids = splits.loc[splits["split"] == split, "image_id"].tolist()[:limit]
    paths = [root / "ham10000" / "images_200x150" / f"{i}.jpg" for i in ids]
    return paths, np.array([classes.index(meta.loc[i, "dx"]) for i in ids])


@torch.inference_mode()
def member_logits(fast: FastPath, batch: np.ndarray) -> np.ndarray:
    """``(members, 8 views, N, C)`` logits."""
    views = get_tta("d4")
    out = []
    for m in fast.members:
        per_view = []
        for start in range(0, len(batch), 64):
            x = to_model_input(torch.from_numpy(batch[start:start + 64]).permute(0, 3, 1, 2), fast.prep.mean,
                               fast.prep.std)
            per_view.append(torch.stack([m.module(v(x)).float() for v in views]).numpy())
        out.append(np.concatenate(per_view, axis=1))
    return np.stack(out)


def probs_for(logits: np.ndarray, fast: FastPath, members: tuple[int, ...], policy: str) -> np.ndarray:
    idx = view_index(policy)
    total = sum(fast.members[i].weight for i in members)
    return sum(fast.members[i].weight / total * torch.from_numpy(logits[i][idx] / fast.members[i].temperature)
               .softmax(-1).mean(0).numpy() for i in members)


def scores(y: np.ndarray, probs: np.ndarray, fast: FastPath) -> dict[str, float]:
    truth, flag = priority1(y, probs, fast.prep.class_names, fast.prep.thresholds)
    return {"bal_acc": balanced_accuracy_score(y, probs.argmax(1)),
            "auc": roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=range(probs.shape[1])),
            "p1_sens": float(flag[truth].mean()), "p1_spec": float((~flag[~truth]).mean())}


def latency(fast: FastPath, batch: np.ndarray, members: tuple[int, ...], policy: str,
            repeats: int) -> tuple[float, float]:
    """(batch-1 median ms over the sample's first images, ms per image over the sample in batches of 16)."""
    fast.predict(batch[:1], policy, members)
    t1 = []
    for i in range(repeats):
        t = time.perf_counter()
        fast.predict(batch[i % len(batch):][:1], policy, members)
        t1.append(time.perf_counter() - t)
    chunks = [batch[i:i + 16] for i in range(0, len(batch), 16)]
    t = time.perf_counter()
    for _ in range(max(1, repeats // (4 * len(chunks)))):
        for chunk in chunks:
            fast.predict(chunk, policy, members)
    per_image = (time.perf_counter() - t) / max(1, repeats // (4 * len(chunks))) / len(batch)
    return float(np.median(t1) * 1e3), per_image * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    ap.add_argument("--limit", type=int, default=None, help="images per split (default: all 1,503)")
    ap.add_argument("--cache", type=Path, default=None, help="npz of the member logits (reused when present)")
    ap.add_argument("--repeats", type=int, default=20, help="timed batch-1 calls per configuration")
    ap.add_argument("--student", default=None, help="a single model to score beside the members (a run "
                    "folder, model.pt or built-in name)")
    ap.add_argument("--agreement", type=float, default=0.985, help="the cascade's required top-1 and triage "
                    "agreement with both members' d4 on validation (default %(default)s)")
    ap.add_argument("--record", action="store_true", help="write the fitted cascade rule into the built-in "
                    "model's ensemble.json")
    args = ap.parse_args()

    predictor = Predictor.pretrained()
    fast = FastPath(predictor)
    classes = predictor.class_names
    splits = {s: load_split(args.data_root, s, args.limit, classes) for s in ("val", "test")}
    if args.cache and args.cache.is_file():
        cached = np.load(args.cache)
        logits = {s: cached[s] for s in splits}
        sample = np.stack([predictor.preprocess(p) for p in splits["test"][0][:SAMPLE]])
    else:
        logits = {}
        for s, (paths, _) in splits.items():
            t = time.perf_counter()
            batch = np.stack([predictor.preprocess(p) for p in paths])
            logits[s] = member_logits(fast, batch)
            print(f"{s}: {len(paths)} images, member logits for 8 views in {time.perf_counter() - t:.0f} s", flush=True)
        sample = batch[:SAMPLE]
        if args.cache:
            np.savez(args.cache, **logits)

    rows = []
    for name, members in MEMBER_SETS.items():
        for policy in POLICIES:
            row = {"members": name, "tta": policy, "passes/image": len(members) * len(get_tta(policy))}
            for s, (_, y) in splits.items():
                for k, v in scores(y, probs_for(logits[s], fast, members, policy), fast).items():
                    row[f"{s} {k}"] = v
            row["batch-1 ms"], row["ms/image @16"] = latency(fast, sample, members, policy, args.repeats)
            rows.append(row)
    rows.append(cascade_row(fast, logits, splits, sample, args))
    if args.student:
        rows += student_rows(args.student, splits, sample, args.repeats)
    table = pd.DataFrame(rows)
    n = {s: len(y) for s, (_, y) in splits.items()}
    print(f"\nbuilt-in ham7-lite2, ONNX Runtime ({torch.get_num_threads()} threads), validation {n['val']} / test "
          f"{n['test']} images; validation figures with the refit member are optimistic (it trained on them)\n")
    print(markdown(table))


def cascade_row(fast: FastPath, logits: dict[str, np.ndarray], splits: dict[str, tuple[list[Path], np.ndarray]],
                sample: np.ndarray, args: argparse.Namespace) -> dict:
    """The test-time cascade: its rule fitted on validation (no labels), scored on validation and test."""
    both = tuple(range(fast.n_members))
    first = {s: probs_for(logits[s], fast, both, "none") for s in splits}
    full = {s: probs_for(logits[s], fast, both, "d4") for s in splits}
    fitted = fit_cascade(first["val"], full["val"], fast.prep.class_names, fast.prep.thresholds,
                         agreement=args.agreement)
    rule = fitted.rule
    print(f"cascade rule (validation): margin {rule.margin}, band {rule.band}; {fitted.escalated:.1%} escalated, "
          f"top-1 agreement {fitted.top1_agreement:.3f}, triage agreement {fitted.triage_agreement:.3f}")
    row: dict = {"members": "both", "tta": f"cascade (m={rule.margin}, b={rule.band})"}
    first_views, rest_views = rule.views()
    passes = []
    for s, (_, y) in splits.items():
        esc = rule.escalate(first[s], fast.prep.class_names, fast.prep.thresholds)
        served = combine(first[s], full[s], esc)
        triage = [priority1(y, q, fast.prep.class_names, fast.prep.thresholds)[1] for q in (served, full[s])]
        print(f"  {s}: {esc.mean():.1%} escalated; agreement with both-d4: top-1 "
              f"{(served.argmax(1) == full[s].argmax(1)).mean():.3f}, priority 1 {(triage[0] == triage[1]).mean():.3f}")
        passes.append(len(both) * (len(first_views) + len(rest_views) * esc.mean()))
        for k, v in scores(y, combine(first[s], full[s], esc), fast).items():
            row[f"{s} {k}"] = v
    row["passes/image"] = " / ".join(f"{p:.1f}" for p in passes)  # validation / test
    fast.set_cascade(rule)
    row["batch-1 ms"], row["ms/image @16"] = latency(fast, sample, both, CASCADE, args.repeats)
    if args.record:  # both manifests: the ensemble of model.pt files and its ONNX twin (onnx/)
        for manifest in (builtin_dir() / "ensemble.json", builtin_dir() / "onnx" / "ensemble.json"):
            data = json.loads(manifest.read_text())
            data["cascade"] = rule.as_dict()
            manifest.write_text(json.dumps(data, indent=2) + "\n")
            print(f"recorded the rule in {manifest}")
    return row


def student_rows(ref: str, splits: dict[str, tuple[list[Path], np.ndarray]], sample: np.ndarray,
                 repeats: int) -> list[dict]:
    """The rows of one single model (no cache: its logits are computed here), per TTA policy."""
    predictor = Predictor.load(ref)
    fast = FastPath(predictor)
    logits = {s: member_logits(fast, np.stack([predictor.preprocess(p) for p in paths]))
              for s, (paths, _) in splits.items()}
    rows = []
    for policy in POLICIES:
        row = {"members": f"student {predictor.card.name}", "tta": policy, "passes/image": len(get_tta(policy))}
        for s, (_, y) in splits.items():
            for k, v in scores(y, probs_for(logits[s], fast, (0,), policy), fast).items():
                row[f"{s} {k}"] = v
        row["batch-1 ms"], row["ms/image @16"] = latency(fast, sample, (0,), policy, repeats)
        rows.append(row)
    return rows


def markdown(table: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.1f}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
