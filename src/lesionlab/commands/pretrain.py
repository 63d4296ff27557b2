"""``lesionlab pretrain``: self-supervised pretraining of an encoder (``pretrain vae``)."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_config_args, add_config_shortcuts, experiment_overrides, load_experiment


def register(sub: argparse._SubParsersAction) -> None:
    pre = sub.add_parser("pretrain", help="self-supervised pretraining of an encoder: vae",
                         description="Pretrain an encoder without labels. Methods: vae.",
                         epilog="example:\n  lesionlab pretrain vae --config configs/vae-pretrain.yaml train.epochs=5")
    psub = pre.add_subparsers(dest="pretrain_method", metavar="METHOD", required=True)
    p = psub.add_parser(
        "vae", help="train a ConvNeXt VAE on images (labels unused) and save its encoder for the model zoo",
        description="Fit a variational auto-encoder (timm ConvNeXt encoder, random init; mirrored ConvNeXt decoder; "
        "MSE/BCE reconstruction + β·KL with a linear or cyclical warm-up) on the train split of any dataset, or "
        "several merged (data.dataset=merged). Writes encoder.safetensors (use it as model.weights with "
        "model.backbone=<vae.encoder>), reconstructions, prior samples, a 2-D projection of the latent means "
        "coloured by diagnosis (labels colour the plot only), loss curves (reconstruction, KL, β) and report.html. "
        "Defaults ← --config FILE ← key=value overrides (see configs/vae-pretrain.yaml).",
        epilog="example:\n  lesionlab pretrain vae --data-root ../shared/data --config configs/vae-pretrain.yaml "
        "vae.encoder=tiny-convnext data.image_size=32 train.epochs=5")
    add_config_args(p, "YAML file (PretrainConfig: name, data, vae, train), e.g. configs/vae-pretrain.yaml",
                    "train.epochs=5 data.image_size=32 vae.latent_dim=64 vae.beta_schedule=cyclical")
    add_config_shortcuts(p)
    p.set_defaults(func=cmd_pretrain_vae, needs_training=True)


def cmd_pretrain_vae(args: argparse.Namespace) -> int:
    from lesionlab.config.pretraining import PretrainConfig

    cfg = load_experiment(args.config, experiment_overrides(args), PretrainConfig)  # checked before the stack loads
    from lesionlab.engine.pretrain import pretrain_vae

    result = pretrain_vae(cfg)
    m = result.metrics
    print(f"validation -ELBO {m['val_elbo']:.1f} (reconstruction {m['val_recon']:.1f}, KL {m['val_kl']:.1f}) | "
          f"{m['epochs']} epochs | {result.seconds['total']:.0f}s")
    print(f"encoder: {result.encoder.resolve()}")
    print(f"report: {result.run.report.resolve()}")
    return 0
