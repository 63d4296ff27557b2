"""``lesionlab ood``: ``ood fit RUN`` (attach an OOD detector to an existing run or ensemble) and ``ood eval RUN``
(the OOD benchmark table)."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_out, add_run_data_root, checks_model

METHODS_HELP = ("knn (Sun et al. 2022), knn-compact (knn with a 600-image int8 bank, for models shipped under a "
                "size budget), mahalanobis (Lee et al. 2018) or energy (Liu et al. 2020)")


def register(sub: argparse._SubParsersAction) -> None:
    ood = sub.add_parser("ood", help="out-of-distribution detector: fit (attach one to a run), eval (the benchmark)",
                         description="The detector that flags images unlike the training data: fit one onto a "
                         "finished run or ensemble (runs trained by 'lesionlab train' already have one), and "
                         "measure detectors on the offline OOD benchmark.",
                         epilog="examples:\n  lesionlab ood fit runs/default-XXXX --method knn\n"
                         "  lesionlab ood eval runs/default-XXXX --methods mahalanobis,energy,knn")
    osub = ood.add_subparsers(dest="ood_command", metavar="OOD_COMMAND", required=True)
    p = osub.add_parser("fit", help="fit the out-of-distribution detector of an existing run and store it",
                        description="Fit the OOD detector on RUN's training-split features, calibrate its threshold "
                        "on the validation split, store it in model.pt (every member's, for an ensemble folder), "
                        "write ood.json (with the share of test lesions flagged) and refresh the report. Runs trained "
                        "by 'lesionlab train' already have one; this attaches one afterwards.",
                        epilog="example:\n  lesionlab ood fit runs/default-XXXX --method knn --coverage 0.975")
    p.add_argument("run", help="run directory or ensemble folder")
    p.add_argument("--method", default=None, help=f"{METHODS_HELP} (default: the run's eval.ood, knn where it "
                   "is none)")
    p.add_argument("--coverage", type=float, default=None,
                   help="share of validation lesions the threshold lets through (default: the run's "
                   "eval.ood_coverage)")
    add_run_data_root(p)
    p.set_defaults(func=cmd_ood_fit)

    p = osub.add_parser("eval", help="OOD benchmark: AUROC and FPR at 95%% TPR per group",
                        description="Score RUN's held-out test lesions (in distribution) against the offline OOD "
                        "benchmark: skimage.data photos and graphics, synthetic noise / blank / gradients / "
                        "checkerboards / rendered text (far OOD) and heavily corrupted test lesions (near OOD). "
                        "Reports AUROC and FPR at 95 % TPR per group for the stored detector and for each --methods "
                        "fitted afresh on the training split, the share flagged at the stored threshold and the share "
                        "the quality gate rejects first; writes ood_eval.csv / ood_eval.md and the run report's "
                        "table.",
                        epilog="example:\n  lesionlab ood eval runs/default-XXXX --methods knn,energy --out ood/")
    p.add_argument("run", help="run directory or ensemble folder")
    p.add_argument("--methods", default="mahalanobis,energy,knn",
                   help="detectors to fit and compare besides the stored one (comma-separated; '' for none)")
    add_run_data_root(p)
    add_out(p, "output folder (default: the run directory)")
    p.add_argument("--seed", type=int, default=0, help="seed of the benchmark's random images and corruptions")
    p.set_defaults(func=cmd_ood_eval)


@checks_model()
def cmd_ood_fit(args: argparse.Namespace) -> int:
    from lesionlab.config import ConfigError
    from lesionlab.engine.ood import fit_ood_run

    if args.coverage is not None and not 0 < args.coverage < 1:
        raise ConfigError(f"--coverage must lie in (0, 1), got {args.coverage}")
    summary = fit_ood_run(args.run, args.method, args.coverage, args.data_root)
    print(f"OOD detector: {summary.get('rule')}")
    if summary.get("test_images"):
        print(f"test lesions flagged: {100 * summary['test_flagged']:.1f}% of {summary['test_images']}")
    else:
        print("test split not scored: the run is validation-only (eval.test=false)")
    return 0


@checks_model()
def cmd_ood_eval(args: argparse.Namespace) -> int:
    from lesionlab.engine.ood import evaluate_ood

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    table = evaluate_ood(args.run, methods=methods, data_root=args.data_root, out_dir=args.out, seed=args.seed)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
