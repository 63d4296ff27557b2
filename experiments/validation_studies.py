"""Three questions answered on the validation split only, from train-only runs (one recipe's seeds, or several recipes).

1. Decision rule: does a per-class logit bias, tuned on half of the validation lesions to raise balanced accuracy,
   raise it on the other half? (lesion-grouped, class-stratified halves; ``--repeats`` random halvings.)
2. Second member: what does averaging two runs (each with its own temperature, over the TTA views) add to the mean
   of the two, in validation balanced accuracy and macro AUC?
3. Which members (``--select``, any train-only runs of the split: other recipes, sizes, backbones): members are
   added greedily on one half of the validation lesions (``lesionlab ensemble --select``'s rule: by the ensemble's
   macro AUC, then balanced accuracy, two at least) and the chosen ensemble is scored on the other half, against the
   best single run chosen on the same half.

The test split is never predicted. Validation logits are cached as ``<run>/validation_view_logits.npz``.

    python experiments/validation_studies.py RUN0 RUN1 RUN2
    python experiments/validation_studies.py RUN0 RUN1 RUN2 --select RUN_A RUN_B ... [--max-members 4]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import minimize
from scipy.special import softmax
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

CACHE = "validation_view_logits.npz"


def validation_logits(run: Path) -> dict[str, np.ndarray]:
    """The run's per-view validation logits ``(V, N, C)``, labels, lesion ids and temperature."""
    if (run / CACHE).is_file():
        return dict(np.load(run / CACHE, allow_pickle=False))
    from lesionlab.engine.core.run_data import load_run, prepare_run_data
    from lesionlab.inference.predict import predict_view_logits

    loaded = load_run(run)
    _, data = prepare_run_data(loaded)
    val = data.indices("val")
    logits = predict_view_logits(loaded.model, data.images, loaded.prep.mean, loaded.prep.std,
                                 indices=data.rows[val], tta=loaded.prep.tta, progress=True)
    out = {"logits": logits, "y": data.targets()[val],
           "lesion": data.table.iloc[val]["lesion_id"].to_numpy().astype(str),  # a str array: loads without pickle
           "temperature": np.float64(loaded.prep.temperature)}
    np.savez(run / CACHE, **out)
    return out


def probs(logits: np.ndarray, temperature: float, bias: np.ndarray | float = 0.0) -> np.ndarray:
    return softmax(logits / temperature + bias, axis=-1).mean(0)


def bal_acc(y: np.ndarray, p: np.ndarray) -> float:
    return float(balanced_accuracy_score(y, p.argmax(1)))


def bias_by_coordinate_ascent(logits, t, y, grid=np.arange(-2, 2.01, 0.1), sweeps: int = 3) -> np.ndarray:
    bias = np.zeros(logits.shape[-1])
    best = bal_acc(y, probs(logits, t, bias))
    for _ in range(sweeps):
        for c, g in itertools.product(range(len(bias)), grid):
            trial = bias.copy()
            trial[c] = g
            score = bal_acc(y, probs(logits, t, trial))
            if score > best + 1e-12:
                best, bias = score, trial
    return bias


def bias_by_balanced_log_loss(logits, t, y) -> np.ndarray:
    c = logits.shape[-1]
    w = 1.0 / np.bincount(y, minlength=c)[y]

    def loss(b: np.ndarray) -> float:
        p = probs(logits, t, b)[np.arange(len(y)), y]
        return float(-(w * np.log(np.clip(p, 1e-12, None))).sum() / w.sum())
    return minimize(loss, np.zeros(c), method="L-BFGS-B", bounds=[(-3, 3)] * c).x


def bias_by_prior_power(logits, t, y) -> np.ndarray:
    log_prior = np.log(np.bincount(y, minlength=logits.shape[-1]) / len(y))
    taus = np.arange(-1.0, 1.01, 0.1)
    scores = [bal_acc(y, probs(logits, t, -tau * log_prior)) for tau in taus]
    return -taus[int(np.argmax(scores))] * log_prior


RULES = {"coordinate ascent on balanced accuracy (7 biases)": bias_by_coordinate_ascent,
         "minimum class-balanced log loss (7 biases)": bias_by_balanced_log_loss,
         "tau * log prior (one parameter)": bias_by_prior_power}


def decision_rule_table(runs: dict[str, dict], repeats: int) -> str:
    lines = ["| bias fitted by | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    deltas = {rule: [] for rule in RULES}
    for d in runs.values():
        logits, y, lesion, t = d["logits"], d["y"], d["lesion"], float(d["temperature"])
        per_rule = {rule: [] for rule in RULES}
        for rep in range(repeats):
            halves = StratifiedGroupKFold(2, shuffle=True, random_state=rep).split(np.zeros(len(y)), y, lesion)
            for tune, score in halves:
                base = bal_acc(y[score], probs(logits[:, score], t))
                for rule, fit in RULES.items():
                    bias = fit(logits[:, tune], t, y[tune])
                    per_rule[rule].append(bal_acc(y[score], probs(logits[:, score], t, bias)) - base)
        for rule in RULES:
            deltas[rule].append(np.mean(per_rule[rule]))
    for rule in RULES:
        lines.append(f"| {rule} | " + " | ".join(f"{v:+.3f}" for v in deltas[rule]) + " |")
    return "\n".join(lines)


def member_table(runs: dict[str, dict]) -> str:
    p = {name: probs(d["logits"], float(d["temperature"])) for name, d in runs.items()}
    y = next(iter(runs.values()))["y"]

    def auc(q: np.ndarray) -> float:
        return float(roc_auc_score(y, q, multi_class="ovr", average="macro"))
    lines = ["| pair | members' mean bal acc | ensemble bal acc | members' mean AUC | ensemble AUC |",
             "|---|---:|---:|---:|---:|"]
    for a, b in itertools.combinations(p, 2):
        ens = (p[a] + p[b]) / 2
        lines.append(f"| {a} + {b} | {np.mean([bal_acc(y, p[a]), bal_acc(y, p[b])]):.3f} | {bal_acc(y, ens):.3f} | "
                     f"{np.mean([auc(p[a]), auc(p[b])]):.4f} | {auc(ens):.4f} |")
    return "\n".join(lines)


def auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p, multi_class="ovr", average="macro"))


def selection_table(runs: dict[str, dict], repeats: int, max_members: int) -> str:
    """`lesionlab ensemble --select`'s greedy choice made on one half of the validation lesions, scored on the other."""
    from lesionlab.engine.ensemble import greedy_members

    names = list(runs)
    logits = [runs[n]["logits"] for n in names]
    temps = [float(runs[n]["temperature"]) for n in names]
    p = {name: probs(d["logits"], float(d["temperature"])) for name, d in runs.items()}
    first = next(iter(runs.values()))
    y, lesion = first["y"], first["lesion"]
    classes = tuple(str(c) for c in range(logits[0].shape[-1]))
    lines = ["| candidate | val bal acc (all) | val AUC (all) | chosen (of " + str(2 * repeats) + " halves) |",
             "|---|---:|---:|---:|"]
    picks: dict[str, int] = dict.fromkeys(p, 0)
    single, ens, size = [], [], []
    for rep in range(repeats):
        for tune, score in StratifiedGroupKFold(2, shuffle=True, random_state=rep).split(np.zeros(len(y)), y, lesion):
            sub = {n: q[tune] for n, q in p.items()}
            best_one = max(sub, key=lambda n: (auc(y[tune], sub[n]), bal_acc(y[tune], sub[n])))
            path = greedy_members([z[:, tune] for z in logits], temps, y[tune], classes, max_members)
            chosen = [names[row["member"]] for row in path]
            for n in chosen:
                picks[n] += 1
            q = np.mean([p[n][score] for n in chosen], 0)
            single.append((bal_acc(y[score], p[best_one][score]), auc(y[score], p[best_one][score])))
            ens.append((bal_acc(y[score], q), auc(y[score], q)))
            size.append(len(chosen))
    for n, q in sorted(p.items(), key=lambda kv: -auc(y, kv[1])):
        lines.append(f"| {n} | {bal_acc(y, q):.3f} | {auc(y, q):.4f} | {picks[n]} |")
    s, e = np.mean(single, 0), np.mean(ens, 0)
    lines += ["", f"On the held-out halves: the best single run (chosen on the other half) {s[0]:.3f} / {s[1]:.4f}; "
              f"the greedy ensemble ({np.mean(size):.1f} members on average) {e[0]:.3f} / {e[1]:.4f} "
              "(balanced accuracy / macro AUC)."]
    everything = np.mean(list(p.values()), 0)
    lines.append(f"All {len(p)} candidates averaged, on all validation images: {bal_acc(y, everything):.3f} / "
                 f"{auc(y, everything):.4f}.")
    return "\n".join(lines)


def _label(run: Path) -> str:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return f"{run.name.rsplit('-', 2)[0]} (seed {cfg['train']['seed']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="train-only run directories of one recipe, one per seed")
    parser.add_argument("--repeats", type=int, default=10, help="random halvings of the validation lesions")
    parser.add_argument("--select", nargs="*", type=Path, default=[],
                        help="more train-only runs of the split (other recipes): run the member-selection study "
                        "(study 3) over RUN... and these instead of studies 1 and 2")
    parser.add_argument("--max-members", type=int, default=4)
    args = parser.parse_args()
    runs = {f"seed {yaml.safe_load((r / 'config.yaml').read_text())['train']['seed']}": validation_logits(r)
            for r in args.runs}
    labels = {len(d["y"]) for d in runs.values()}
    if len(labels) != 1:
        raise SystemExit(f"the runs have different validation splits ({sorted(labels)} images): use one recipe's seeds")
    if not args.select:  # studies 1 and 2 (study 3 alone with --select)
        print("## Decision rule: change of validation balanced accuracy on the held-out half\n")
        print(decision_rule_table(runs, args.repeats))
        print("\n## Second member: 2-member ensembles against their members (validation)\n")
        print(member_table(runs))
    else:
        pool = {_label(r): validation_logits(r) for r in [*args.runs, *args.select]}
        if len({len(d["y"]) for d in pool.values()}) != 1:
            raise SystemExit("the --select runs have another validation split")
        print(f"\n## Member selection: greedy on one half, scored on the other (validation, {args.repeats} halvings)\n")
        print(selection_table(pool, args.repeats, args.max_members))


if __name__ == "__main__":
    main()
