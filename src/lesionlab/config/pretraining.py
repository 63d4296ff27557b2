"""Configs of self-supervised pretraining, the pretraining comparison and distillation (issue #6)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lesionlab.config import DataConfig, EvalConfig, ExperimentConfig, ModelConfig, TrainConfig, _check


@dataclass
class VAEConfig:
    """VAE pretraining: a timm ConvNeXt encoder, a mirrored ConvNeXt-style decoder, ELBO with a KL warm-up."""

    encoder: str = "convnext-tiny"  # any timm ConvNeXt (alias or timm name), random init; tiny-convnext for CPU
    latent_dim: int = 256  # size of μ and of log σ²
    decoder_depths: tuple[int, ...] | None = None  # ConvNeXt blocks per decoder stage, deepest first; null: mirror
    reconstruction: str = "mse"  # mse | bce, summed over pixels (images scaled to [0, 1])
    beta: float = 1.0  # KL weight once warmed up
    beta_schedule: str = "linear"  # constant | linear | cyclical (see lesionlab.pretraining.losses)
    warmup_epochs: float = 10.0  # linear: epochs from β = 0 to beta
    cycles: int = 4  # cyclical: cycles over the whole training
    cycle_ratio: float = 0.5  # cyclical: fraction of each cycle in which β rises (then it stays at beta)
    projection: str = "pca"  # 2-D projection of the latent means for the report: pca | tsne
    grid_images: int = 16  # images in the reconstruction and prior-sample grids

    def __post_init__(self) -> None:
        _check(self.latent_dim >= 1, f"vae.latent_dim must be at least 1, got {self.latent_dim}")
        _check(self.decoder_depths is None or (len(self.decoder_depths) > 0 and min(self.decoder_depths) >= 0),
               "vae.decoder_depths must be null or a non-empty list of block counts >= 0")
        _check(self.beta >= 0, f"vae.beta must be >= 0, got {self.beta}")
        _check(self.warmup_epochs >= 0, "vae.warmup_epochs must be >= 0")
        _check(self.cycles >= 1, "vae.cycles must be at least 1")
        _check(0 < self.cycle_ratio <= 1, "vae.cycle_ratio must lie in (0, 1]")
        _check(1 <= self.grid_images <= 256, "vae.grid_images must lie in [1, 256]")


@dataclass
class PretrainConfig:
    """``lesionlab pretrain vae``: unlabelled images → a pretrained encoder (labels only colour the latent plot).

    ``train`` reuses the classifier's trainer settings (epochs, batch size, optimizer, lr, scheduler, augment,
    seed, accelerator, ...); its loss, class-weight, sampler, EMA and monitor fields do not apply to a VAE.
    """

    name: str = "vae-pretrain"
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check(self.train.augmentation.mode == "sample" and not self.train.speedups.active,
               "VAE pretraining augments per image and has no speed-ups: train.augmentation.mode must be sample and "
               "train.speedups off")


@dataclass
class EncoderArmConfig:
    """One encoder of ``compare-pretraining``: an architecture and where its weights come from."""

    name: str = "random"
    init: str = "random"  # random | imagenet | vae (the vae_run's encoder) | file (weights: PATH)
    backbone: str | None = None  # alias or timm name; null: the VAE run's encoder architecture
    weights: str | None = None  # init=file: a state-dict / safetensors file


def _default_arms() -> tuple[EncoderArmConfig, ...]:
    return (EncoderArmConfig("vae", "vae"), EncoderArmConfig("imagenet-lite0", "imagenet", "efficientnet-lite0"),
            EncoderArmConfig("random", "random"))


@dataclass
class ComparePretrainingConfig:
    """The same frozen-encoder classifier (``experiment``) on top of several encoders, then the dynamics table."""

    name: str = "compare-pretraining"
    output_dir: str = "runs"
    vae_run: str | None = None  # a ``lesionlab pretrain vae`` run directory (needed by init=vae arms)
    arms: tuple[EncoderArmConfig, ...] = field(default_factory=_default_arms)
    frozen_epochs: int = 30  # epochs with the encoder frozen (only the head trains)
    finetune_epochs: int = 0  # then unfreeze the encoder's last stage for this many epochs (0: never)
    finetune_lr: float = 1e-4
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)  # the shared recipe (data, head, train)

    def __post_init__(self) -> None:
        _check(len(self.arms) >= 1, "arms must list at least one encoder")
        names = [a.name for a in self.arms]
        _check(len(set(names)) == len(names), f"arms[].name must be unique, got {names}")
        _check(self.frozen_epochs >= 1, "frozen_epochs must be at least 1")
        _check(self.finetune_epochs >= 0, "finetune_epochs must be >= 0")
        _check(self.finetune_lr > 0, "finetune_lr must be positive")


@dataclass
class DistillConfig:
    """Knowledge distillation of a trained teacher (run or ensemble directory) into a small student."""

    name: str = "distill"
    output_dir: str = "runs"
    teacher: str = ""  # run directory (model.pt) or ensemble directory (ensemble.json)
    data_root: str | None = None  # override the teacher's data.root (data and split come from the teacher)
    student: ModelConfig = field(default_factory=lambda: ModelConfig(backbone="tiny-resnet"))
    init_from: str | None = None  # a LesionLab model file: the student starts from its weights and architecture
    temperature: float = 4.0  # softens teacher and student distributions in the soft-target term
    alpha: float = 0.7  # weight of the soft-target term (× T²); 1 - alpha weighs the hard-label loss
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(tta="none"))
    latency_runs: int = 30  # timed batch-1 CPU forward passes per model

    def __post_init__(self) -> None:
        _check(bool(self.teacher), "teacher must name a trained run or ensemble directory")
        _check(self.temperature > 0, f"temperature must be positive, got {self.temperature}")
        _check(0 <= self.alpha <= 1, f"alpha must lie in [0, 1], got {self.alpha}")
        _check(self.latency_runs >= 1, "latency_runs must be at least 1")
        _check(not self.train.speedups.active,
               "distillation scores every sample at full size: train.speedups must be off")
