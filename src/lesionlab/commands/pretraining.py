"""CLI: ``lesionlab pretrain vae``, ``lesionlab compare-pretraining`` and ``lesionlab distill``."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import checks_model


def _add_common(p: argparse.ArgumentParser, config_help: str, overrides_help: str, data_key: str = "data.root") -> None:
    from lesionlab.commands.common import add_config_args

    add_config_args(p, config_help, overrides_help)
    p.add_argument("--data-root", default=None, help=f"shortcut for {data_key}=...")
    p.add_argument("--output-dir", default=None, help="shortcut for output_dir=...")


def register(subparsers: argparse._SubParsersAction) -> None:
    pre = subparsers.add_parser("pretrain", help="self-supervised pretraining of an encoder (VAE)",
                                description="Pretrain an encoder without labels. Methods: vae.")
    psub = pre.add_subparsers(dest="pretrain_method", metavar="METHOD", required=True)
    p = psub.add_parser(
        "vae", help="train a ConvNeXt VAE on images (labels unused) and save its encoder for the model zoo",
        description="Fit a variational auto-encoder (timm ConvNeXt encoder, random init; mirrored ConvNeXt decoder; "
        "MSE/BCE reconstruction + β·KL with a linear or cyclical warm-up) on the train split of any dataset, or "
        "several merged (data.dataset=merged). Writes encoder.safetensors (use it as model.weights with "
        "model.backbone=<vae.encoder>), reconstructions, prior samples, a 2-D projection of the latent means "
        "coloured by diagnosis (labels colour the plot only), loss curves (reconstruction, KL, β) and report.html. "
        "Defaults ← --config FILE ← key=value overrides (see configs/vae-pretrain.yaml).",
        epilog="example: lesionlab pretrain vae --data-root ../shared/data --config configs/vae-pretrain.yaml "
        "vae.encoder=tiny-convnext data.image_size=32 train.epochs=5")
    _add_common(p, "YAML file (PretrainConfig: name, data, vae, train), e.g. configs/vae-pretrain.yaml",
                "train.epochs=5 data.image_size=32 vae.latent_dim=64 vae.beta_schedule=cyclical")
    p.set_defaults(func=cmd_pretrain_vae, needs_training=True)

    p = subparsers.add_parser(
        "compare-pretraining", help="same frozen-encoder classifier on VAE vs ImageNet vs random encoders",
        description="Train the identical classifier (experiment.*: data, head, optimizer, loss, epochs) on top of "
        "each encoder in arms (init: vae | imagenet | random | file), frozen for frozen_epochs, then optionally "
        "with the last stage unfrozen for finetune_epochs. Writes one run per encoder, the training-dynamics table "
        "(final value, change, slopes per phase, overfitting gap), learning curves side by side and report.html. "
        "See configs/compare-pretraining.yaml.",
        epilog="example: lesionlab compare-pretraining --vae-run runs/vae-pretrain-... "
        "--config configs/compare-pretraining.yaml frozen_epochs=6 finetune_epochs=2 experiment.data.image_size=32")
    p.add_argument("--vae-run", default=None, help="shortcut for vae_run=... (a 'pretrain vae' run directory)")
    _add_common(p, "YAML file (ComparePretrainingConfig), e.g. configs/compare-pretraining.yaml",
                "frozen_epochs=6 finetune_epochs=2 experiment.train.optimizer.lr=3e-4 experiment.data.image_size=32",
                "experiment.data.root")
    p.set_defaults(func=cmd_compare_pretraining, needs_training=True)

    p = subparsers.add_parser(
        "distill", help="distil a trained teacher run (or ensemble) into a small student with soft targets",
        description="Knowledge distillation: the student (student.backbone) learns from the teacher's softened "
        "probabilities (temperature) mixed with the hard labels (alpha), on the teacher's own training split; both "
        "are scored on the teacher's held-out test split. Reports accuracy, parameter counts and batch-1 CPU latency "
        "of student and teacher. The student run directory works with evaluate/predict like any run.",
        epilog="example: lesionlab distill --output-dir runs runs/teacher-... student.backbone=mobilenetv3_small_050 "
        "temperature=4 alpha=0.7 train.epochs=10")
    p.add_argument("teacher", help="teacher run directory (model.pt) or ensemble directory (ensemble.json)")
    _add_common(p, "YAML file (DistillConfig) with defaults for the options",
                "student.backbone=mobilenetv3_small_050 temperature=4 alpha=0.7 train.epochs=10", "data_root")
    p.set_defaults(func=cmd_distill, needs_training=True)


def _load(args: argparse.Namespace, cls: type, *first: str, data_key: str = "data.root"):
    """``cls`` from ``--config`` ← ``first`` ← the overrides ← the shortcut options, every registered name checked."""
    from lesionlab.commands.common import config_overrides, load_experiment, shortcut_overrides

    shortcuts = shortcut_overrides(args, data_root=data_key, output_dir="output_dir", vae_run="vae_run")
    return load_experiment(args.config, [*first, *config_overrides(args, *shortcuts)], cls)


def cmd_pretrain_vae(args: argparse.Namespace) -> int:
    from lesionlab.pretraining.config import PretrainConfig

    cfg = _load(args, PretrainConfig)  # checked before the training stack is imported
    from lesionlab.engine.pretrain import pretrain_vae

    result = pretrain_vae(cfg)
    m = result.metrics
    print(f"validation -ELBO {m['val_elbo']:.1f} (reconstruction {m['val_recon']:.1f}, KL {m['val_kl']:.1f}) | "
          f"{m['epochs']} epochs | {result.seconds['total']:.0f}s")
    print(f"encoder: {result.encoder.resolve()}")
    print(f"report: {result.run.report.resolve()}")
    return 0


def cmd_compare_pretraining(args: argparse.Namespace) -> int:
    from lesionlab.pretraining.config import ComparePretrainingConfig

    cfg = _load(args, ComparePretrainingConfig, data_key="experiment.data.root")
    from lesionlab.engine.compare_pretraining import compare_pretraining

    result = compare_pretraining(cfg)
    print(result.summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"report: {result.report.resolve()}")
    return 0


@checks_model('teacher')
def cmd_distill(args: argparse.Namespace) -> int:
    from lesionlab.pretraining.config import DistillConfig

    cfg = _load(args, DistillConfig, f"teacher={args.teacher}", data_key="data_root")
    from lesionlab.engine.distill import distill

    result = distill(cfg)
    print(result.summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"student run: {result.run.root.resolve()}")
    print(f"report: {result.run.report.resolve()}")
    return 0
