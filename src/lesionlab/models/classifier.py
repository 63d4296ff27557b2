"""The LesionLab classifier: a headless timm backbone (optionally with attention), optional patient-metadata
fusion, then a named head."""

from __future__ import annotations

import torch
from torch import nn

from lesionlab.config import ConfigError, ModelConfig
from lesionlab.models.backbones import create_backbone
from lesionlab.models.colour import create_colour_constancy
from lesionlab.models.heads import create_head
from lesionlab.models.metadata import MetadataBranch, MetadataSpec
from lesionlab.models.mixstyle import MixStyle, attach_mixstyle


class LesionClassifier(nn.Module):
    """``backbone`` (pooled features) [⊕ ``metadata`` branch] → ``head`` (logits).

    ``forward(x, meta=None)``: ``meta`` is the encoded metadata ``(B, spec.dim)`` (see
    :meth:`MetadataSpec.encode`); a metadata model given none treats every field as missing. With
    ``frozen_backbone`` the backbone's parameters never train and it stays in eval mode (BatchNorm statistics fixed);
    an attention block on top of it (``model.attention``) still trains.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, metadata: MetadataBranch | None = None,
                 frozen_backbone: bool = False, colour: nn.Module | None = None) -> None:
        super().__init__()
        self.colour = colour  # colour constancy on the normalised input (model.colour_constancy), or None
        self.backbone = backbone
        self.metadata = metadata
        self.head = head
        self.frozen_backbone = frozen_backbone
        if frozen_backbone:
            self.frozen_part.requires_grad_(False)
            self.frozen_part.eval()

    @property
    def num_features(self) -> int:
        return feature_dim(self.backbone)

    @property
    def frozen_part(self) -> nn.Module:
        """The pretrained trunk (without any attention block): what ``freeze_backbone`` freezes."""
        return getattr(self.backbone, "trunk", self.backbone)

    @property
    def metadata_spec(self) -> MetadataSpec | None:
        """How raw age/sex/site become this model's metadata input (None: an image-only model)."""
        return self.metadata.spec if self.metadata is not None else None

    def train(self, mode: bool = True) -> LesionClassifier:
        super().train(mode)
        if self.frozen_backbone:
            self.frozen_part.eval()
        return self

    def set_normalisation(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        """Tell the colour-constancy block (if any) how the input is normalised."""
        if self.colour is not None:
            self.colour.set_normalisation(mean, std)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x if self.colour is None else self.colour(x))

    def classify_features(self, features: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from pooled backbone features (e.g. a feature cache), fusing metadata when the model has it."""
        if self.metadata is not None:
            if meta is None:
                meta = self.metadata.missing_batch(features.shape[0])
            features = torch.cat([features, self.metadata(meta.to(features.dtype))], dim=1)
        elif meta is not None:
            raise ValueError("this model was trained without metadata (model.metadata=false); pass meta=None")
        return self.head(features)

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify_features(self.features(x), meta)


def feature_dim(backbone: nn.Module) -> int:
    """Size of the pooled features a headless timm model returns (some, e.g. MobileNetV3, add a conv head)."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def create_model(cfg: ModelConfig, num_classes: int, metadata_spec: MetadataSpec | None = None) -> LesionClassifier:
    """Build the classifier described by ``cfg`` for ``num_classes`` outputs.

    ``metadata_spec`` (fitted on the training split with :meth:`MetadataSpec.fit`) is required when
    ``cfg.metadata`` is on; a default spec over ``cfg.metadata_fields`` is used if none is given.
    """
    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights,
                               drop_path_rate=cfg.drop_path_rate, attention=cfg.attention,
                               attention_stage=cfg.attention_stage, global_pool=cfg.global_pool)
    branch = None
    if cfg.metadata:
        spec = metadata_spec or MetadataSpec(tuple(cfg.metadata_fields))
        if tuple(spec.fields) != tuple(cfg.metadata_fields):
            raise ConfigError(f"model.metadata_fields {list(cfg.metadata_fields)} differ from the metadata spec's "
                              f"{list(spec.fields)}")
        branch = MetadataBranch(spec, field_dropout=cfg.metadata_dropout)
    in_features = feature_dim(backbone) + (branch.out_features if branch is not None else 0)
    head = create_head(cfg.head, in_features, num_classes, cfg.drop_rate)
    model = LesionClassifier(backbone, head, branch, frozen_backbone=cfg.freeze_backbone,
                             colour=create_colour_constancy(cfg.colour_constancy))
    if cfg.mixstyle > 0:  # training-time only, no parameters: checkpoints are unchanged
        model.mixstyle = MixStyle(p=cfg.mixstyle)
        attach_mixstyle(backbone, model.mixstyle)
    model.set_normalisation(*default_normalisation(model))
    return model.to(memory_format=torch.channels_last)


def default_normalisation(model: LesionClassifier, pretrained: object = None) -> tuple[tuple[float, ...],
                                                                                       tuple[float, ...]]:
    """Mean/std: the backbone's pretrained config (0.5/0.5 for the TF EfficientNets), else ImageNet statistics."""
    cfg = getattr(model.backbone, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    return mean, std
