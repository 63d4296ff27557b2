"""``lesionlab compare-pretraining``: the same frozen-encoder classifier on VAE, ImageNet and random encoders."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_config_args, add_config_shortcuts, experiment_overrides, load_experiment

#: What ``--data-root`` sets: the data of the experiment every arm trains.
DATA_KEY = "experiment.data.root"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare-pretraining", help="same frozen-encoder classifier on VAE vs ImageNet vs random encoders",
        description="Train the identical classifier (experiment.*: data, head, optimizer, loss, epochs) on top of "
        "each encoder in arms (init: vae | imagenet | random | file), frozen for frozen_epochs, then optionally "
        "with the last stage unfrozen for finetune_epochs. Writes one run per encoder, the training-dynamics table "
        "(final value, change, slopes per phase, overfitting gap), learning curves side by side and report.html. "
        "See configs/compare-pretraining.yaml.",
        epilog="example:\n  lesionlab compare-pretraining --vae-run runs/vae-pretrain-... "
        "--config configs/compare-pretraining.yaml frozen_epochs=6 finetune_epochs=2 experiment.data.image_size=32")
    p.add_argument("--vae-run", default=None, help="shortcut for vae_run=... (a 'pretrain vae' run directory)")
    add_config_args(p, "YAML file (ComparePretrainingConfig), e.g. configs/compare-pretraining.yaml",
                    "frozen_epochs=6 finetune_epochs=2 experiment.train.optimizer.lr=3e-4 "
                    "experiment.data.image_size=32")
    add_config_shortcuts(p, data_key=DATA_KEY)
    p.set_defaults(func=cmd_compare_pretraining, needs_training=True)


def cmd_compare_pretraining(args: argparse.Namespace) -> int:
    from lesionlab.config.pretraining import ComparePretrainingConfig

    cfg = load_experiment(args.config, experiment_overrides(args, DATA_KEY, vae_run="vae_run"),
                          ComparePretrainingConfig)
    from lesionlab.engine.compare_pretraining import compare_pretraining

    result = compare_pretraining(cfg)
    print(result.summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"report: {result.report.resolve()}")
    return 0
