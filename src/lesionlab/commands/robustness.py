"""``lesionlab robustness``: balanced error of a run under image corruptions at several severities."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_out, add_run_data_root, checks_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robustness", help="balanced error under 15 image corruptions x 5 severities",
                       description="Score a run (or ensemble) on its held-out test split under image corruptions "
                       "(noise, blur, brightness/contrast, JPEG, pixelate, black corners, ink characters) at "
                       "severities 1-5: balanced error per corruption and severity, relative to clean; table, plot, "
                       "report.",
                       epilog="example:\n  lesionlab robustness runs/default-... --severities 1,3,5 --max-images 500 "
                       "--tta none")
    p.add_argument("run", help="run directory or ensemble folder")
    p.add_argument("--corruptions", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--severities", default="1,2,3,4,5", help="comma-separated severities (default 1,2,3,4,5)")
    p.add_argument("--max-images", type=int, default=None, help="stratified subset of the test split")
    p.add_argument("--tta", default=None, help="TTA policy for this evaluation, e.g. none (1 view), flips, d4 "
                   "(default: the run's eval.tta)")
    add_run_data_root(p)
    add_out(p, "output folder (default: RUN/robustness/<time>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random corruptions")
    p.set_defaults(func=cmd_robustness)


def _csv_list(text: str | None, kind=str) -> list | None:
    from lesionlab.config import ConfigError

    try:
        return None if not text else [kind(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"expected a comma-separated list of {kind.__name__} values, got {text!r}") from None


@checks_model()
def cmd_robustness(args: argparse.Namespace) -> int:
    from lesionlab.engine.robustness import evaluate_robustness

    result = evaluate_robustness(args.run, out_dir=args.out, corruptions=_csv_list(args.corruptions),
                                 severities=_csv_list(args.severities, int) or [], max_images=args.max_images,
                                 tta=args.tta, data_root=args.data_root, seed=args.seed)
    print(f"clean balanced error {result.clean_error:.4f}")
    print(result.table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0
