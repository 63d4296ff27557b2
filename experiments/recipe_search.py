"""Run the recipe search of ``configs/recipe-search.yaml``: one validation-only training run per candidate.

Resumable: candidates already in the results CSV are skipped, and a candidate's stopped run (the one of its folders
with the most finished epochs and a ``checkpoints/last.ckpt``) continues from its last epoch (``train(resume=True)``).
A spec may name ``rank_by`` (a CSV column, default ``val_bal_acc``; ``val_worst_bal_acc`` ranks a several-population
search by its worst population, from the run's ``val_by_source.json``), ``title`` and ``about`` (the table's heading
and text), and ``reuse`` (candidate → run folder of the same configuration, read instead of trained when present).
Usage::

    python experiments/recipe_search.py [--config configs/recipe-search.yaml] [--data-root ../shared/data]
        [--only NAME ...] [--out docs/results/recipe-search]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import yaml

from lesionlab.config import load_config
from lesionlab.engine.study.run import machine
from lesionlab.engine.train import train
from lesionlab.runs import RunPaths

COLUMNS = ["candidate", "val_bal_acc", "val_auc", "best_epoch", "epochs", "image_size", "fit_min", "s_per_epoch",
           "train_bal_acc", "overrides", "run_dir", "machine", "val_worst_bal_acc", "by_source"]
ABOUT = ("HAM10000, 7 classes, the default lesion-disjoint 70/15/15 split (seed 0): 7,0xx training and 1,5xx "
         "validation images. Each candidate is one training run (seed 0) of `{base}` with the common overrides "
         "`{common}` plus its own; the figures are the best epoch's validation balanced accuracy and macro AUC (EMA "
         "weights, no TTA). The test split was never predicted (`eval.test=false`). Minutes are fit wall time on the "
         "machine named in the last column (shared with other work: compare as ratios within this table).")


def run_row(name: str, own: list[str], run_dir: Path, image_size: int) -> dict:
    """One results row from a finished validation-only run folder (its validation figures, history and timings)."""
    history = pd.read_csv(run_dir / "history.csv")
    if (run_dir / "val_metrics.json").is_file():
        m = json.loads((run_dir / "val_metrics.json").read_text())
        fit = json.loads((run_dir / "timings.json").read_text())["fit"]
    else:  # stopped after its last epoch, before the summary files: its best epoch and seconds from history.csv
        best = history.loc[history["val_bal_acc"].idxmax()]
        m = {"val_bal_acc": best["val_bal_acc"], "val_auc": best["val_auc"], "best_epoch": int(best["epoch"]),
             "epochs_run": len(history), "train_bal_acc": best["train_bal_acc"]}
        fit = float(history["seconds"].sum())
    row = {"candidate": name, "val_bal_acc": m["val_bal_acc"], "val_auc": m["val_auc"],
           "best_epoch": m["best_epoch"], "epochs": m["epochs_run"], "image_size": image_size,
           "fit_min": fit / 60, "s_per_epoch": fit / len(history),
           "train_bal_acc": m.get("train_bal_acc", float("nan")),
           "overrides": " ".join(own), "run_dir": str(run_dir), "machine": machine(),
           "val_worst_bal_acc": float("nan"), "by_source": ""}
    by_source = run_dir / "val_by_source.json"
    if by_source.is_file():  # several populations: each one's balanced accuracy / melanoma AUC, and the worst
        figures = {k: v for k, v in json.loads(by_source.read_text()).items() if isinstance(v, dict) and "n" in v}
        row["val_worst_bal_acc"] = min(f["balanced_accuracy"] for f in figures.values())
        row["by_source"] = "; ".join(f"{k} {f['balanced_accuracy']:.3f} / {f.get('mel_auc', float('nan')):.3f}"
                                     for k, f in figures.items())
    return row


def stopped_run(output_dir: Path, prefix: str) -> Path | None:
    """The candidate's unfinished run with the most finished epochs that can resume, or None."""
    best, epochs = None, 0
    for run in sorted(output_dir.glob(f"{prefix}-*")):
        finished = (run / "val_metrics.json").is_file() or (run / "val_by_source.json").is_file()
        if finished or not (run / "checkpoints" / "last.ckpt").is_file() or not (run / "history.csv").is_file():
            continue
        n = len(pd.read_csv(run / "history.csv"))
        if n > epochs:
            best, epochs = run, n
    return best


def write_markdown(df: pd.DataFrame, path: Path, spec: dict) -> None:
    rank_by = spec.get("rank_by", "val_bal_acc")
    ranked = df.sort_values(rank_by, ascending=False)
    several = rank_by == "val_worst_bal_acc"
    about = spec.get("about", ABOUT).format(base=spec["base"], common=" ".join(spec["common"]))
    lines = [f"# {spec.get('title', 'Recipe search (issue 12): validation only')}", "", about, "",
             "| candidate | val bal acc | val AUC | " + ("worst population | per population: bal acc / mel AUC | "
                                                       if several else "")
             + "best epoch / epochs | px | fit min | s/epoch | train bal acc | overrides |",
             "|---|---:|---:|" + ("---:|---|" if several else "") + "---:|---:|---:|---:|---:|---|"]
    for _, r in ranked.iterrows():
        extra = f"{r.val_worst_bal_acc:.4f} | {r.by_source} | " if several else ""
        lines.append(f"| {r.candidate} | {r.val_bal_acc:.4f} | {r.val_auc:.4f} | {extra}"
                     f"{int(r.best_epoch)} / {int(r.epochs)} "
                     f"| {int(r.image_size)} | {r.fit_min:.1f} | {r.s_per_epoch:.0f} | {r.train_bal_acc:.3f} | "
                     f"`{r.overrides if isinstance(r.overrides, str) and r.overrides else '(none)'}` |")
    queued = [n for n in spec["candidates"] if n not in set(df["candidate"])]
    lines += ["", f"Machine: {df['machine'].iloc[-1]}.", ""]
    notes = Path(str(path).removesuffix(".md") + "-notes.md")
    if notes.is_file():  # hand-written findings, kept beside the generated table
        lines += [notes.read_text().strip(), ""]
    if queued:
        lines += [f"Queued but not run yet (CPU budget): {', '.join(queued)}.", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/recipe-search.yaml")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--out", default="docs/results/recipe-search", help="results prefix (.csv and .md)")
    ap.add_argument("--only", nargs="*", help="run only these candidates")
    args = ap.parse_args(argv)
    csv, md = Path(args.out + ".csv"), Path(args.out + ".md")
    csv.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=COLUMNS)
    spec = yaml.safe_load(Path(args.config).read_text())
    while True:  # the config is re-read after every candidate, so the queue can be edited while it runs
        spec = yaml.safe_load(Path(args.config).read_text())
        todo = [(n, o) for n, o in spec["candidates"].items()
                if (not args.only or n in args.only) and n not in set(done["candidate"])]
        if not todo:
            break
        name, own = todo[0]
        reuse = Path(spec.get("reuse", {}).get(name, "/nonexistent"))
        if (reuse / "val_metrics.json").is_file() or (reuse / "val_by_source.json").is_file():
            print(f"== {name}: read from {reuse}", flush=True)
            row = run_row(name, own, reuse, load_config(spec["base"], [*spec["common"], *own]).data.image_size)
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            done.to_csv(csv, index=False)
            continue
        overrides = [*spec["common"], *own, f"data.root={Path(args.data_root).resolve()}", f"name=search-{name}",
                     f"output_dir={spec.get('output_dir', 'runs/recipe-search')}"]
        cfg = load_config(spec["base"], overrides)
        stopped = stopped_run(Path(cfg.output_dir), f"search-{name}")
        print(f"== {name}: {' '.join(own)}" + (f" (resuming {stopped})" if stopped else ""), flush=True)
        t0 = time.perf_counter()
        result = train(cfg, RunPaths(stopped), resume=True) if stopped else train(cfg)
        row = run_row(name, own, Path(result.run.root), cfg.data.image_size)
        print(json.dumps(row), f"({time.perf_counter() - t0:.0f}s)", flush=True)
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        done.to_csv(csv, index=False)
        write_markdown(done, md, spec)
    if len(done):
        write_markdown(done, md, spec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
