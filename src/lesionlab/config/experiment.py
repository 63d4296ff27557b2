"""The experiment sections other than ``train``: data (and its split), model, eval, and the experiment itself."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lesionlab.config.base import _check
from lesionlab.config.train import TrainConfig


@dataclass
class SplitConfig:
    """Lesion-disjoint train/val/test fractions (stratified by class, grouped by lesion or patient)."""

    val: float = 0.15  # share of lesions (or patients) in the validation split
    test: float = 0.15  # share of lesions (or patients) in the held-out test split
    seed: int = 0  # seed of the split (independent of train.seed)
    folds: int = 0  # >1 assigns a k-fold index to the non-test samples; `lesionlab cv` trains the CV ensemble on them
    column: str | None = None  # use this table column (values train/val/test) instead, e.g. official_split
    val_fold: int | None = None  # cross-validation: this fold (of `folds`) is the validation split, the rest train
    unit: str = "lesion"  # lesion: lesion-disjoint (always, except:) image: ignore lesion ids (leakage audit only)
    per_source: bool = False  # split each source of a merged dataset on its own (its split = the source's alone)

    def __post_init__(self) -> None:
        _check(0 <= self.val < 1 and 0 <= self.test < 1, "split.val and split.test must lie in [0, 1)")
        _check(self.val + self.test < 1, "split.val + split.test must leave room for a training split (< 1)")
        _check(self.folds == 0 or self.folds >= 2, "split.folds must be 0 (off) or at least 2")
        _check(self.val_fold is None or 0 <= self.val_fold < self.folds,
               f"split.val_fold must lie in [0, split.folds) (split.folds={self.folds}), got {self.val_fold}")
        _check(self.unit in ("lesion", "image"), f"split.unit must be lesion or image, got {self.unit!r}")


@dataclass
class DataConfig:
    """Which images, in which label space, cropped and resized how."""

    dataset: str = "ham10000"  # registered dataset name (lesionlab data info NAME; see docs/datasets.md)
    root: str | None = None  # data root; default: $LESIONLAB_DATA, then the user cache dir
    image_dir: str | None = None  # override the dataset's image folder
    csv: str | None = None  # table for the csv / onehot-csv datasets
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific keyword arguments
    taxonomy: str | None = None  # label space to train in (ham7, isic8, triage); default: the dataset's own
    crop: str = "center-square"  # center-square (ISIC 2018 test protocol) | full (squashed) | pad
    canonical: str | None = None  # none | ham-200x150: larger images first shrunk + re-encoded like HAM10000's files
    image_size: int = 64  # side in pixels of the square model input
    cache_dir: str | None = None  # default: <user cache>/lesionlab/arrays
    skip_bad: bool = False  # skip unreadable images with a warning instead of failing
    max_samples: int | None = None  # stratified subsample (by lesion) for quick experiments and tests
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        _check(8 <= self.image_size <= 1024, f"data.image_size must be between 8 and 1024, got {self.image_size}")
        _check(self.max_samples is None or self.max_samples > 0, "data.max_samples must be positive or null")


#: Pooling choices that keep the feature length equal to the backbone's channel count.
GLOBAL_POOLS = ("avg", "max", "avgmax")


@dataclass
class ModelConfig:
    """Backbone (timm name or LesionLab alias) + head."""

    backbone: str = "resnet10t"  # LesionLab alias or any timm name (lesionlab models lists them)
    head: str = "linear"  # linear | gap-bn-dropout | bn-dense | fc-dropout-fc | mlp
    # false | imagenet (= true: offline package weights when installed, else the timm hub) | hub | a timm tag (in1k)
    pretrained: str | bool = False
    weights: str | None = None  # local state-dict / safetensors file for the backbone
    drop_rate: float = 0.2  # dropout before the classifier
    drop_path_rate: float = 0.0  # stochastic depth inside the backbone (timm)
    attention: str = "none"  # none | soft (soft-attention block; see lesionlab.models.attention)
    attention_stage: int = -1  # insert attention after this backbone stage (later stages dropped); -1: at the end
    global_pool: str = "avg"  # pooling of the backbone's feature map: avg (GAP), max (GMP) or avgmax
    metadata: bool = False  # fuse patient age/sex/site with the image features
    metadata_fields: tuple[str, ...] = ("age", "sex", "site")  # which metadata the fusion branch reads
    metadata_dropout: float = 0.1  # training: encode each metadata field as missing with this probability
    freeze_backbone: bool = False  # train only the head (and metadata branch); the backbone stays fixed
    feature_cache: bool = True  # with freeze_backbone: compute backbone features once and train on the cache
    colour_constancy: str = "none"  # none | shades-of-gray: white balance inside the model (travels with it)
    mixstyle: float = 0.0  # MixStyle (Zhou et al. 2021) probability per training batch on early stages; 0 = off

    def __post_init__(self) -> None:
        _check(0 <= self.drop_rate < 1, "model.drop_rate must lie in [0, 1)")
        _check(0 <= self.drop_path_rate < 1, "model.drop_path_rate must lie in [0, 1)")
        _check(isinstance(self.pretrained, bool) or (isinstance(self.pretrained, str) and bool(
               re.fullmatch(r"[A-Za-z0-9_]+", self.pretrained.strip()))),
               "model.pretrained must be true or false, imagenet, hub or a timm pretrained tag (e.g. in1k), "
               f"got {self.pretrained!r}")
        _check(self.attention_stage >= -1, "model.attention_stage must be -1 (the end) or a stage index >= 0")
        _check(self.global_pool in GLOBAL_POOLS, f"model.global_pool must be one of {', '.join(GLOBAL_POOLS)}, "
               f"got {self.global_pool!r}")
        _check(0 <= self.metadata_dropout < 1, "model.metadata_dropout must lie in [0, 1)")
        _check(0 <= self.mixstyle <= 1, f"model.mixstyle is a probability in [0, 1], got {self.mixstyle!r}")
        _check(not (self.freeze_backbone and self.feature_cache and self.colour_constancy != "none"),
               "model.colour_constancy runs inside the model: with model.freeze_backbone set model.feature_cache=false")
        _check(bool(self.metadata_fields) and set(self.metadata_fields) <= {"age", "sex", "site"},
               f"model.metadata_fields must be a non-empty subset of age, sex, site, got {list(self.metadata_fields)}")


@dataclass
class EvalConfig:
    """What the evaluation reports."""

    topk: tuple[int, ...] = (2, 3)  # top-k accuracies reported besides top-1
    batch_size: int = 256  # images per inference batch
    tta: str = "d4"  # test-time augmentation: none, flips, d4 or views joined by '+' (e.g. identity+hflip+rot90)
    calibrate: bool = True  # fit temperature scaling on the validation split and store it with the model
    ece_bins: int = 15  # bins of the expected calibration error (equal-width and equal-mass)
    specificities: tuple[float, ...] = (0.8, 0.9, 0.95)  # operating points: sensitivity at these specificities
    sensitivities: tuple[float, ...] = (0.9, 0.95)  # ... and specificity at these sensitivities
    triage_sensitivity: float | None = 0.9  # priority-1 class thresholds stored with the model (null: none)
    gradcam_images: int = 70  # test images explained with Grad-CAM in the report (0: no Grad-CAM section)
    gradcam_method: str = "gradcam"  # gradcam or gradcam++
    mask_dir: str | None = None  # lesion masks for CAM-in-lesion; default: <data root>/<dataset>/masks_200x150
    test: bool = True  # false: stop after validation (recipe searches), the test split stays untouched
    ood: str = "knn"  # OOD detector on training features: knn, knn-compact, knn-tiny, mahalanobis, energy, none
    ood_coverage: float = 0.975  # share of validation lesions the OOD threshold lets through

    def __post_init__(self) -> None:
        _check(self.ece_bins >= 1, "eval.ece_bins must be at least 1")
        _check(all(0 < v < 1 for v in (*self.specificities, *self.sensitivities)),
               "eval.specificities and eval.sensitivities must lie in (0, 1)")
        _check(self.triage_sensitivity is None or 0 < self.triage_sensitivity < 1,
               "eval.triage_sensitivity must lie in (0, 1) or be null")
        _check(self.gradcam_images >= 0, "eval.gradcam_images must be >= 0")
        _check(self.gradcam_method in ("gradcam", "gradcam++"), "eval.gradcam_method must be gradcam or gradcam++")
        _check(self.ood in ("none", "mahalanobis", "energy", "knn", "knn-compact", "knn-tiny"),
               "eval.ood: mahalanobis, energy, knn, knn-compact, knn-tiny or none")
        _check(0 < self.ood_coverage < 1, "eval.ood_coverage must lie in (0, 1)")


@dataclass
class ExperimentConfig:
    """Everything a run needs; written to ``config.yaml`` in the run directory."""

    name: str = "default"  # run name: the run directory is <output_dir>/<name>-<time>
    output_dir: str = "runs"  # parent folder of the run directories
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    task: str = "diagnosis"  # diagnosis (the dataset's classes or data.taxonomy) | triage (3 priority levels)

    def __post_init__(self) -> None:
        _check(self.task in TASKS, f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "triage":
            _check(self.data.taxonomy in (None, "triage"),
                   f"task=triage trains on the triage taxonomy; data.taxonomy={self.data.taxonomy!r} contradicts it")
            self.data.taxonomy = "triage"


#: ``task`` values: what the classifier predicts.
TASKS = ("diagnosis", "triage")
