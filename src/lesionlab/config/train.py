"""The ``train`` section, grouped: optimizer, schedule, loss, sampling, augmentation and the Lightning trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lesionlab.config.base import _check


@dataclass
class StageConfig:
    """One stage of staged fine-tuning: which layers train, for how long, at what rate."""

    epochs: int = 1  # epochs of this stage
    lr: float = 1e-3  # peak learning rate of this stage
    unfreeze: str = "all"  # head | last-block (alias last) | last-2-blocks | all; see lesionlab.training.unfreeze

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.stages[].epochs must be at least 1")
        _check(self.lr > 0, "train.stages[].lr must be positive")


@dataclass
class SpeedupConfig:
    """Opt-in speed-up methods for training steps (see ``lesionlab.training.speedups``); defaults are off."""

    progressive_resize: float = 1.0  # initial image-size scale, e.g. 0.5; grows linearly to 1 (1 = off)
    resize_until: float = 0.8  # fraction of training after which batches are full size
    selective_backprop: float = 1.0  # fraction of each batch back-propagated: its highest-loss samples (1 = off)
    backprop_until: float = 0.8  # fraction of training after which every sample is back-propagated again

    def __post_init__(self) -> None:
        _check(0.1 <= self.progressive_resize <= 1, "train.speedups.progressive_resize must lie in [0.1, 1]")
        _check(0 < self.selective_backprop <= 1, "train.speedups.selective_backprop must lie in (0, 1]")
        _check(0 < self.resize_until <= 1 and 0 < self.backprop_until <= 1,
               "train.speedups.resize_until and backprop_until must lie in (0, 1]")

    @property
    def active(self) -> bool:
        return self.progressive_resize < 1 or self.selective_backprop < 1


@dataclass
class MixConfig:
    """Mixup / CutMix on training batches (torchvision v2); alphas of 0 turn each off."""

    mixup: float = 0.0  # Beta(α, α) of mixup (Zhang et al. 2018), e.g. 0.2
    cutmix: float = 0.0  # Beta(α, α) of CutMix (Yun et al. 2019), e.g. 1.0
    prob: float = 1.0  # fraction of batches mixed

    def __post_init__(self) -> None:
        _check(self.mixup >= 0 and self.cutmix >= 0,
               "train.augmentation.mix.mixup and train.augmentation.mix.cutmix must be >= 0")
        _check(0 <= self.prob <= 1, "train.augmentation.mix.prob must lie in [0, 1]")

    @property
    def active(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.prob > 0


@dataclass
class OptimizerConfig:
    """``train.optimizer``: which optimizer (``lesionlab.training.optim.OPTIMIZERS``) at what rate."""

    name: str = "adamw"  # adam | adamw | sgd | rmsprop | schedulefree-adamw
    lr: float = 2e-3  # peak learning rate (ignored when train.stages are given: each stage has its own)
    weight_decay: float = 0.05  # decoupled (adamw) or L2 weight decay; norms and biases are exempt
    layer_decay: float | None = None  # layer-wise LR decay (timm's groups): block k of K trains at lr * d^(K-k)

    def __post_init__(self) -> None:
        _check(self.lr > 0, "train.optimizer.lr must be positive")
        _check(self.weight_decay >= 0, "train.optimizer.weight_decay must be >= 0")
        _check(self.layer_decay is None or 0 < self.layer_decay <= 1,
               "train.optimizer.layer_decay must lie in (0, 1] or null")


@dataclass
class ScheduleConfig:
    """``train.schedule``: the learning-rate schedule (``lesionlab.training.optim.SCHEDULERS``)."""

    name: str = "onecycle"  # onecycle | cosine | constant | plateau
    warmup_epochs: float = 1.0  # linear warm-up (fractions of an epoch allowed)
    plateau_factor: float = 0.5  # name=plateau: LR multiplier when the monitored metric stalls
    plateau_patience: int = 2  # name=plateau: epochs without improvement before reducing

    def __post_init__(self) -> None:
        _check(self.warmup_epochs >= 0, "train.schedule.warmup_epochs must be >= 0")
        _check(0 < self.plateau_factor < 1, "train.schedule.plateau_factor must lie in (0, 1)")
        _check(self.plateau_patience >= 0, "train.schedule.plateau_patience must be >= 0")


@dataclass
class LossConfig:
    """``train.loss``: the loss (``lesionlab.training.losses.LOSSES``) and its class weights."""

    name: str = "ce"  # ce (cross-entropy) | focal
    label_smoothing: float = 0.0  # ce: smoothing of the one-hot targets
    class_weights: str = "inverse"  # none | inverse (N / (C * N_c)) | effective (effective number of samples)
    effective_beta: float = 0.999  # β of class_weights=effective
    focal_gamma: float = 2.0  # name=focal: focusing parameter γ
    focal_alpha: tuple[float, ...] | None = None  # name=focal: per-class α; null = the class weights

    def __post_init__(self) -> None:
        _check(0 <= self.label_smoothing < 1, "train.loss.label_smoothing must lie in [0, 1)")
        _check(0 <= self.effective_beta < 1, "train.loss.effective_beta must lie in [0, 1)")
        _check(self.focal_gamma >= 0, "train.loss.focal_gamma must be >= 0")
        _check(self.focal_alpha is None or all(a >= 0 for a in self.focal_alpha),
               "train.loss.focal_alpha values must be >= 0")


@dataclass
class SamplingConfig:
    """``train.sampling``: how training batches are drawn and the training split is resampled."""

    sampler: str = "random"  # random (shuffle), balanced (classes), source-balanced or source-class-balanced
    undersample_cap: int | None = None  # keep at most this many training images per class (random, seeded)
    oversample: str = "none"  # none, duplicate or smote: grow each class to the largest (capped) class
    smote_space: str = "pixel"  # pixel (cached arrays) or feature (frozen-backbone embeddings, head training)
    smote_k: int = 5  # SMOTE nearest neighbours

    def __post_init__(self) -> None:
        _check(self.undersample_cap is None or self.undersample_cap >= 1,
               "train.sampling.undersample_cap must be >= 1 or null")
        _check(self.smote_k >= 1, "train.sampling.smote_k must be at least 1")


@dataclass
class AugmentationConfig:
    """``train.augmentation``: the preset (``lesionlab.data.transforms``), its parameters, mixup / CutMix."""

    preset: str = "light"  # none | light | standard | heavy | trivial | randaugment
    params: dict[str, Any] = field(default_factory=dict)  # override preset parameters, e.g. {degrees: 30}
    mode: str = "sample"  # sample: per image in the loader; batch: per-sample draws in batched ops on the device
    mix: MixConfig = field(default_factory=MixConfig)  # mixup / CutMix of whole batches

    def __post_init__(self) -> None:
        _check(self.mode in {"sample", "batch"}, f"train.augmentation.mode must be sample or batch, got {self.mode!r}")


@dataclass
class TrainerConfig:
    """``train.trainer``: where and how the Lightning trainer runs."""

    accelerator: str = "auto"  # Lightning accelerator: auto | cpu | gpu | mps
    devices: str = "auto"  # Lightning devices: auto, a count (2) or ids (0,1)
    num_nodes: int = 1  # machines for multi-node DDP
    strategy: str = "auto"  # Lightning strategy: auto | ddp | ddp_spawn | fsdp
    precision: str = "auto"  # auto: bf16-mixed where the CPU/GPU has fast bf16, else 32-true; or any Lightning value
    num_workers: int = -1  # -1: chosen from the CPU count
    logger: tuple[str, ...] = ("csv",)  # csv | tensorboard | mlflow | none, or a list: Lightning loggers in the run
    save_last: bool = True  # checkpoints/last.ckpt each epoch (weights, optimizer, RNG...): `train --resume`

    def __post_init__(self) -> None:
        if isinstance(self.logger, str):
            self.logger = (self.logger,)
        _check(self.num_nodes >= 1, "train.trainer.num_nodes must be at least 1")
        _check(self.num_workers >= -1, "train.trainer.num_workers must be -1 (auto) or >= 0")


#: ``train.monitor`` values.
MONITORS = ("val_bal_acc", "val_loss", "val_auc")


#: ``train.fit_on`` values: which lesions one fit trains on (the test split is always held out).
FIT_ON = ("train", "train+val")


@dataclass
class TrainConfig:
    """Optimisation, imbalance handling, augmentation and the Lightning trainer."""

    epochs: int = 60  # epochs of one fit (ignored when stages are given)
    batch_size: int = 64  # training batch size (per device)
    seed: int = 0  # seeds weights, augmentation, sampling and resampling (the split has data.split.seed)
    monitor: str = "val_bal_acc"  # val_bal_acc | val_loss | val_auc: picks the best epoch and drives early stopping
    patience: int = 0  # early-stopping patience in epochs; 0 disables early stopping
    ema_decay: float = 0.998  # exponential moving average of the weights; 0 disables it
    progress: bool = True  # progress bars
    max_time_minutes: float | None = None  # hard wall-clock budget for fitting
    fit_on: str = "train"  # train | train+val (a refit on training + validation lesions; needs calibration_from)
    calibration_from: str | None = None  # train+val: the train-only run whose validation-fitted temperature, triage
    # thresholds and unsure threshold the refit ships (it has no validation split of its own)
    refit: bool = False  # `lesionlab train`: after this train-only run, refit its recipe on training + validation
    # lesions for the full epochs, calibrated by this run, and evaluate the refit (not this run) on the test split
    refit_ensemble: bool = False  # ship this run and its refit as one 2-model ensemble, scored on test (needs refit)
    # equal weights; the refit is then not scored alone; no extra training. Ignored without train.refit
    stages: tuple[StageConfig, ...] = ()  # staged fine-tuning; when set, replaces epochs and optimizer.lr
    speedups: SpeedupConfig = field(default_factory=SpeedupConfig)  # opt-in speed-ups of one fit
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)  # optimizer and learning rate
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # learning-rate schedule
    loss: LossConfig = field(default_factory=LossConfig)  # loss and class weights
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # batch sampling and resampling of the split
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)  # training augmentation
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # where and how Lightning runs

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs must be at least 1")
        _check(self.batch_size >= 1, "train.batch_size must be at least 1")
        _check(self.patience >= 0, "train.patience must be >= 0")
        _check(0 <= self.ema_decay < 1, "train.ema_decay must lie in [0, 1) (0 disables EMA)")
        _check(self.monitor in MONITORS, f"train.monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        _check(self.fit_on in FIT_ON, f"train.fit_on must be one of {', '.join(FIT_ON)}, got {self.fit_on!r}")
        if self.fit_on == "train+val":
            _check(bool(self.calibration_from),
                   "train.fit_on=train+val leaves no validation split to calibrate on: set train.calibration_from to "
                   "a train-only run of the same recipe (or use `lesionlab train --refit RUN_DIR`)")
            _check(self.patience == 0, "train.fit_on=train+val has no validation split to stop early on: "
                                       "set train.patience=0 and fix train.epochs")
            _check(self.schedule.name != "plateau", "train.fit_on=train+val has no validation metric for "
                   "train.schedule.name=plateau to watch: use a fixed schedule (onecycle, cosine, step, constant)")
        else:
            _check(self.calibration_from is None, "train.calibration_from only applies with train.fit_on=train+val")
        mix = self.augmentation.mix
        _check(not (mix.active and self.loss.name == "focal"),
               "train.augmentation.mix (mixup/CutMix) makes soft targets, which train.loss.name=focal does not take; "
               "use train.loss.name=ce")
        _check(not (mix.active and self.speedups.selective_backprop < 1),
               "train.augmentation.mix does not combine with train.speedups.selective_backprop")
        _check(not (self.stages and self.speedups.active),
               "train.speedups schedule one fit; they do not combine with staged fine-tuning (train.stages)")
