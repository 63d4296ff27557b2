"""``lesionlab ensemble``: combine trained runs (seeds, recipes, refits) into one ensemble folder."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_output_dir, add_run_data_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ensemble", help="combine trained runs (seeds, recipes, refits) into one ensemble folder",
                       description=(
                           "Average the temperature-scaled probabilities of several trained runs of one task (run "
                           "directories, or ensemble folders whose members are taken in) into one ensemble folder "
                           "(ensemble.json) that evaluate, predict, serve and release accept like a run. Members "
                           "must share classes, crop, normalisation and the held-out test split; image sizes may "
                           "differ (images are read at the largest and resized for smaller members).\n\n"
                           "Operating point: when every member validated on the same lesions and none trained on "
                           "them (train-only runs of one split, e.g. seeds), the priority-1 thresholds and the unsure "
                           "threshold are fitted on the ensemble's validation predictions, and the ensemble's and "
                           "each member's validation figures are printed. When a member is a refit, no validation "
                           "lesion is unseen: copy a train-only member's with --thresholds-from. The test split is "
                           "scored only with --test, once."),
                       epilog="examples:\n"
                       "  lesionlab ensemble runs/default-2026* --name seeds\n"
                       "  lesionlab ensemble runs/recipe-search/search-* --select 4 --name chosen\n"
                       "  lesionlab ensemble runs/default-ensemble-A runs/default-ensemble-B "
                       "--thresholds-from runs/default-A --test")
    p.add_argument("runs", nargs="+", help="run directories or ensemble folders (two members or more in all)")
    p.add_argument("--name", default="ensemble", help="folder name prefix (default: ensemble)")
    add_output_dir(p, "parent of the ensemble folder (default: the folder holding the first run)")
    p.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                   help="one non-negative weight per member, in order (default: equal)")
    p.add_argument("--thresholds-from", default=None, metavar="RUN",
                   help="copy this run's triage thresholds and unsure threshold instead of fitting them on validation")
    p.add_argument("--select", type=int, default=None, metavar="K",
                   help="keep at most K of the runs (2 or more), chosen greedily on their shared validation lesions: "
                   "start from the best run and add whichever raises the ensemble's macro AUC (then balanced "
                   "accuracy) most, until nothing does (selection.csv shows the path; the validation figures are "
                   "then optimistic, the test split judges the choice)")
    p.add_argument("--test", action="store_true", help="score the held-out test split once and write report.html")
    add_run_data_root(p)
    p.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lesionlab.engine.ensemble import ensemble_runs

    result = ensemble_runs(args.runs, args.output_dir or Path(args.runs[0]).resolve().parent, args.name,
                           weights=args.weights, thresholds_from=args.thresholds_from, test=args.test,
                           data_root=args.data_root, progress=True, select=args.select)
    import pandas as pd

    members = result.run.root / "members.csv"
    if members.is_file():
        print(pd.read_csv(members).to_string(index=False))
    m = result.metrics
    selection = result.run.root / "selection.csv"
    if selection.is_file():
        print(f"greedy selection on validation:\n{pd.read_csv(selection).to_string(index=False)}")
    if "val_bal_acc" in m:
        print(f"ensemble of {m['members']}: validation balanced accuracy {m['val_bal_acc']:.4f} | macro AUC "
              f"{m['val_auc']:.4f} ({m['val_images']} images no member trained on; the operating point was fitted "
              "there)")
    if "balanced_accuracy" in m:
        print(f"test balanced accuracy {m['balanced_accuracy']:.4f} | macro AUC {m['auc_macro']:.4f}")
        print(f"report: {(result.run.root / 'report.html').resolve()}")
    print(f"ensemble: {result.run.root.resolve()}")
    return 0
