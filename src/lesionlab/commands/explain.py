"""``lesionlab explain``: Grad-CAM / Grad-CAM++ heat-maps, the CAM-in-lesion score and a gallery."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_out, add_run_data_root, checks_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="Grad-CAM / Grad-CAM++ heat-maps, CAM-in-lesion score, gallery",
                       description="Without IMAGES: explain the run's held-out test split — Grad-CAM of the predicted "
                       "class, the CAM-in-lesion score (share of heat-map mass inside the lesion mask) per class and "
                       "a gallery of correct and wrong predictions. With IMAGES: one overlay PNG per image.",
                       epilog="examples:\n  lesionlab explain runs/default-... --max-images 100\n"
                       "  lesionlab explain runs/default-... lesion.jpg --method gradcam++ --out cams/")
    p.add_argument("run", help="run directory or ensemble folder")
    p.add_argument("images", nargs="*", help="image files or folders (default: the run's test split)")
    p.add_argument("--method", choices=("gradcam", "gradcam++"), default=None,
                   help="CAM method (default: the run's eval.gradcam_method)")
    p.add_argument("--masks", default=None, help="lesion-mask folder (<id>_segmentation.png; default: the run's "
                   "eval.mask_dir, else beside the data)")
    p.add_argument("--max-images", type=int, default=200, help="test images to explain (class-balanced sample)")
    p.add_argument("--per-class", type=int, default=3, help="gallery: correct and wrong examples per class")
    add_run_data_root(p)
    add_out(p, "output folder (default: RUN/explain/<time>)")
    p.set_defaults(func=cmd_explain)


@checks_model()
def cmd_explain(args: argparse.Namespace) -> int:
    from lesionlab.commands.common import expand_images
    from lesionlab.config import ConfigError

    if args.max_images < 1 or args.per_class < 1:
        raise ConfigError("--max-images and --per-class must be at least 1")
    images = expand_images(args.images)  # a missing image fails before the run loads
    from lesionlab.engine.explain import explain_files, explain_test_split

    if args.images:
        out = explain_files(args.run, images, method=args.method, mask_dir=args.masks, out_dir=args.out)
    else:
        out = explain_test_split(args.run, method=args.method, mask_dir=args.masks, max_images=args.max_images,
                                 per_class=args.per_class, data_root=args.data_root, out_dir=args.out)
    print(f"explanations: {out.resolve()}")
    return 0
