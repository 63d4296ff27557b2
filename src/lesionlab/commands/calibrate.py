"""``lesionlab calibrate``: refit a run's temperature and priority-1 thresholds on its validation split."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_run_data_root, checks_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="refit temperature + priority-1 thresholds on a run's validation split",
                       description="Fit the temperature (NLL on the validation split) and the priority-1 class "
                       "thresholds (sensitivity target on validation) of a finished run, store them in its model.pt "
                       "(the predictor applies them) and report ECE/Brier before and after, and the operating points, "
                       "on its held-out test split.",
                       epilog="example:\n  lesionlab calibrate runs/default-... --sensitivity 0.95")
    p.add_argument("run", help="run directory")
    add_run_data_root(p)
    p.add_argument("--no-temperature", action="store_true", help="keep T = 1 (thresholds only)")
    p.add_argument("--sensitivity", type=float, default=None,
                   help="sensitivity target of the priority-1 thresholds on validation (default: the run's "
                   "eval.triage_sensitivity, 0.9 where it is null)")
    p.set_defaults(func=cmd_calibrate)


@checks_model()
def cmd_calibrate(args: argparse.Namespace) -> int:
    from lesionlab.config import ConfigError
    from lesionlab.engine.calibrate import calibrate_run

    if args.sensitivity is not None and not 0 < args.sensitivity < 1:
        raise ConfigError("--sensitivity must lie in (0, 1)")
    s = calibrate_run(args.run, data_root=args.data_root, calibrate=not args.no_temperature,
                        triage_sensitivity=args.sensitivity)
    print(f"temperature {s['temperature']:.3f} | test ECE {s['before']['ece']:.4f} -> {s['after']['ece']:.4f} | "
          f"Brier {s['before']['brier']:.4f} -> {s['after']['brier']:.4f} | thresholds {s['thresholds']}")
    return 0
