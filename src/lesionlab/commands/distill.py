"""``lesionlab distill``: distil a trained teacher run (or ensemble) into a small student with soft targets."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import (
    add_config_args,
    add_config_shortcuts,
    checks_model,
    experiment_overrides,
    load_experiment,
)

#: What ``--data-root`` sets in a DistillConfig.
DATA_KEY = "data_root"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="distil a trained teacher run (or ensemble) into a small student with soft targets",
        description="Knowledge distillation: the student (student.backbone) learns from the teacher's softened "
        "probabilities (temperature) mixed with the hard labels (alpha), on the teacher's own training split; both "
        "are scored on the teacher's held-out test split. Reports accuracy, parameter counts and batch-1 CPU latency "
        "of student and teacher. init_from=MODEL.pt starts the student from a trained model of the same classes "
        "(its architecture and weights). The student run directory works with evaluate/predict like any run.",
        epilog="example:\n  lesionlab distill --output-dir runs runs/teacher-... "
        "student.backbone=mobilenetv3_small_050 "
        "temperature=4 alpha=0.7 train.epochs=10")
    p.add_argument("teacher", help="teacher run directory (model.pt) or ensemble directory (ensemble.json)")
    add_config_args(p, "YAML file (DistillConfig) with defaults for the options",
                    "student.backbone=mobilenetv3_small_050 temperature=4 alpha=0.7 train.epochs=10")
    add_config_shortcuts(p, data_key=DATA_KEY)
    p.set_defaults(func=cmd_distill, needs_training=True)


@checks_model("teacher")
def cmd_distill(args: argparse.Namespace) -> int:
    from lesionlab.config.pretraining import DistillConfig

    cfg = load_experiment(args.config, [f"teacher={args.teacher}", *experiment_overrides(args, DATA_KEY)],
                          DistillConfig)
    from lesionlab.engine.distill import distill

    result = distill(cfg)
    print(result.summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"student run: {result.run.root.resolve()}")
    print(f"report: {result.run.report.resolve()}")
    return 0
