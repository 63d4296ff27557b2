"""``lesionlab shift``: dataset shift of unlabelled image sets against the data the model was judged on."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import DefaultsHelpFormatter, add_data_root, add_out, checks_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shift", help="is a clinic's (unlabelled) image set unlike the model's test data? class mix, OOD rate, "
        "MMD test", description="For each TARGET (a folder of images or a dataset name) against a reference (the "
        "images of --reference the model never trained or validated on): the predicted class mix and its "
        "total-variation distance, the OOD-flag rate, and a two-sample MMD test on the model's features with a "
        "permutation p-value. No labels are needed: shift shows before the errors do.",
        epilog="example:\n  lesionlab shift builtin clinic_images/ ph2 --data-root ../shared/data --out shift/",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("model", help="run directory, ensemble folder, .onnx file, or a built-in name ('builtin')")
    p.add_argument("targets", nargs="+", metavar="TARGET", help="image folder or dataset name (ph2, isic-archive ...)")
    p.add_argument("--reference", default="ham10000", help="dataset whose unseen images are the reference")
    add_data_root(p)
    p.add_argument("--max-images", type=int, default=400, help="images per set (a random or stratified subsample)")
    p.add_argument("--permutations", type=int, default=500, help="permutations for the MMD p-value")
    p.add_argument("--tta", default=None, help="override the model's test-time augmentation for the class mix "
                   "(none is fastest; default: the model's own)")
    add_out(p, "folder for shift.json and shift.csv")
    p.set_defaults(func=cmd_shift)


@checks_model("model")
def cmd_shift(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lesionlab.data.loaders import DATASETS
    from lesionlab.engine.shift import shift_report

    for target in args.targets:  # fail before any model loads
        if not Path(target).is_dir():
            DATASETS.get(target)
    summaries = shift_report(args.model, args.targets, reference=args.reference, data_root=args.data_root,
                             max_images=args.max_images, permutations=args.permutations, out=args.out,
                             tta=args.tta)
    for s in summaries:
        ood = "n/a" if s.ood_rate is None else f"{s.ood_rate:.1%} (reference {s.reference_ood_rate:.1%})"
        print(f"{s.target} ({s.n_target} images) vs {s.reference} ({s.n_reference}):")
        print(f"  MMD² {s.mmd2:.4f}, p = {s.p_value:.3g}: {s.verdict}")
        print(f"  OOD-flag rate {ood}; class-mix distance {s.mix_distance:.3f}")
        mix = ", ".join(f"{c} {s.predicted_mix[c]:.0%}/{s.reference_mix[c]:.0%}" for c in s.predicted_mix)
        print(f"  predicted mix (target/reference): {mix}")
    return 0
