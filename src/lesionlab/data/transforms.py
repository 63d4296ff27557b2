"""Augmentation presets on uint8 CHW tensors (torchvision.transforms.v2) and the one input normalisation.

A preset is a set of named parameters (:data:`AUGMENT_PARAMS` documents each); ``train.augmentation.preset`` picks the
preset and ``train.augmentation.params`` overrides any of its parameters, e.g. ``{degrees: 20, erase_p: 0}``.
:func:`to_model_input` is used by training, evaluation and the predictor alike, so preprocessing cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from lesionlab.config import ConfigError, TrainConfig
from lesionlab.data.acquisition import AcquisitionChain, AcquisitionParams
from lesionlab.data.artefacts import ArtefactParams, DermoscopyArtefacts
from lesionlab.registry import Registry

Transform = Callable[[torch.Tensor], torch.Tensor]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Every augmentation parameter, its "off" value and what it does.
AUGMENT_PARAMS: dict[str, tuple[Any, str]] = {
    "hflip": (0.0, "probability of a horizontal flip"),
    "vflip": (0.0, "probability of a vertical flip"),
    "rot90": (False, "rotate by a random multiple of 90°"),
    "crop_scale": (None, "random resized crop: [min, max] area fraction (null = off)"),
    "crop_ratio": ((0.8, 1.25), "random resized crop: [min, max] aspect ratio"),
    "degrees": (0.0, "random rotation range ±degrees"),
    "translate": (0.0, "random shift, fraction of the image size"),
    "scale": (None, "random zoom [min, max] (null = off)"),
    "brightness": (0.0, "colour jitter: brightness"),
    "contrast": (0.0, "colour jitter: contrast"),
    "saturation": (0.0, "colour jitter: saturation"),
    "hue": (0.0, "colour jitter: hue (≤ 0.5)"),
    "erase_p": (0.0, "probability of a cutout (random erasing with black)"),
    "erase_scale": ((0.02, 0.12), "cutout: [min, max] area fraction"),
    "policy": (None, "automatic policy after the flips: randaugment or trivialaugment (torchvision v2; null = off)"),
    "policy_magnitude": (9, "randaugment: magnitude of each operation (0-30)"),
    "acquisition": (0.0, "probability of a random acquisition chain first: blur, sensor noise, down- and re-sampling "
                         "with a random filter, JPEG re-encoding (lesionlab.data.acquisition)"),
    "artefacts": (0.0, "probability of random dermoscopy artefacts first (before the acquisition chain): hair, ruler "
                       "marks, a dark round vignette, gel bubbles (lesionlab.data.artefacts)"),
    "acquisition_scale": ((0.3, 1.0), "acquisition chain: [min, max] down-sampling factor"),
    "acquisition_jpeg": ((30, 95), "acquisition chain: [min, max] JPEG quality"),
}

#: ``train.augmentation.params.policy`` values: torchvision v2's automatic augmentation policies on uint8 images.
POLICIES: Registry[Callable[[Mapping[str, Any]], Transform]] = Registry("augmentation policy")
POLICIES.add("randaugment", lambda p: v2.RandAugment(num_ops=2, magnitude=int(p["policy_magnitude"])),
             help="RandAugment (Cubuk et al. 2020): 2 random operations at a fixed magnitude")
POLICIES.add("trivialaugment", lambda p: v2.TrivialAugmentWide(),
             help="TrivialAugment (Müller & Hutter 2021): one random operation at a random magnitude")

AUGMENTATIONS: Registry[dict[str, Any]] = Registry("augmentation")
_LIGHT = {"hflip": 0.5, "vflip": 0.5, "rot90": True}
_STANDARD = {**_LIGHT, "degrees": 45.0, "translate": 0.08, "scale": (0.9, 1.15), "brightness": 0.2, "contrast": 0.2,
             "saturation": 0.2, "hue": 0.03}
AUGMENTATIONS.add("none", {}, help="no augmentation")
AUGMENTATIONS.add("light", _LIGHT, help="flips and 90° rotations")
AUGMENTATIONS.add("standard", _STANDARD, help="light + rotation, shift, zoom, brightness/contrast/saturation/hue")
AUGMENTATIONS.add("trivial", {**_LIGHT, "policy": "trivialaugment"},
                  help="flips, 90° rotations and TrivialAugment (per image in the loader)")
AUGMENTATIONS.add("randaugment", {**_LIGHT, "policy": "randaugment"},
                  help="flips, 90° rotations and RandAugment(2, 9) (per image in the loader)")
AUGMENTATIONS.add("heavy", {**_STANDARD, "scale": None, "crop_scale": (0.6, 1.0), "brightness": 0.25,
                            "contrast": 0.25, "saturation": 0.25, "hue": 0.05, "erase_p": 0.5},
                  help="standard + random resized crop and cutout")


class RandomRot90(torch.nn.Module):
    """Rotate by a random multiple of 90° (lesions have no canonical orientation)."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(0, 4, ()).item())
        return torch.rot90(img, k, dims=(-2, -1)) if k else img


def _pair(value: Any, key: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, Sequence) or len(value) != 2 or not all(isinstance(v, int | float) for v in value):
        raise ConfigError(f"train.augmentation.params.{key} must be a [min, max] pair or null, got {value!r}")
    return float(value[0]), float(value[1])


def augmentation_params(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full parameter set of preset ``name`` with ``overrides`` applied (unknown keys list the valid ones)."""
    params = {k: default for k, (default, _) in AUGMENT_PARAMS.items()}
    params.update(AUGMENTATIONS.get(name))
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(AUGMENT_PARAMS))
    if unknown:
        raise ConfigError(f"Unknown train.augmentation.params key(s) {unknown}; valid: {sorted(AUGMENT_PARAMS)}")
    params.update(overrides)
    for key in ("hflip", "vflip", "erase_p", "acquisition", "artefacts"):
        if not isinstance(params[key], int | float) or not 0 <= params[key] <= 1:
            raise ConfigError(f"train.augmentation.params.{key} must be a probability in [0, 1], got {params[key]!r}")
    for key in ("degrees", "translate", "brightness", "contrast", "saturation", "hue"):
        if not isinstance(params[key], int | float) or params[key] < 0:
            raise ConfigError(f"train.augmentation.params.{key} must be a number >= 0, got {params[key]!r}")
    if params["hue"] > 0.5 or params["translate"] > 1:
        raise ConfigError("train.augmentation.params: hue must be <= 0.5 and translate <= 1")
    for key in ("crop_scale", "crop_ratio", "scale", "erase_scale", "acquisition_scale", "acquisition_jpeg"):
        params[key] = _pair(params[key], key)
    lo, hi = params["acquisition_scale"] or (1.0, 1.0)
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"train.augmentation.params.acquisition_scale must satisfy 0 < min <= max <= 1, "
                          f"got {[lo, hi]}")
    lo, hi = params["acquisition_jpeg"] or (95, 95)
    if not 1 <= lo <= hi <= 100:
        raise ConfigError(f"train.augmentation.params.acquisition_jpeg must satisfy 1 <= min <= max <= 100, "
                          f"got {[lo, hi]}")
    params["rot90"] = bool(params["rot90"])
    if params["policy"] is not None:
        POLICIES.get(str(params["policy"]))  # an unknown name lists the valid ones
    if not isinstance(params["policy_magnitude"], int) or not 0 <= params["policy_magnitude"] <= 30:
        raise ConfigError(f"train.augmentation.params.policy_magnitude must be an integer in [0, 30], "
                          f"got {params['policy_magnitude']!r}")
    return params


def build_augmentation(params: Mapping[str, Any], size: int) -> Transform:
    """A ``v2.Compose`` of the enabled steps: flips, 90° rotations, resized crop, affine, colour jitter, cutout."""
    steps: list[Transform] = []
    if params["artefacts"]:  # drawn on the skin, so the camera's chain comes after them
        steps.append(DermoscopyArtefacts(ArtefactParams(p=float(params["artefacts"]))))
    if params["acquisition"]:
        jpeg = params["acquisition_jpeg"]
        steps.append(AcquisitionChain(AcquisitionParams(p=float(params["acquisition"]),
                                                        scale=params["acquisition_scale"] or (1.0, 1.0),
                                                        jpeg_quality=(int(jpeg[0]), int(jpeg[1])))))
    if params["hflip"]:
        steps.append(v2.RandomHorizontalFlip(params["hflip"]))
    if params["vflip"]:
        steps.append(v2.RandomVerticalFlip(params["vflip"]))
    if params["rot90"]:
        steps.append(RandomRot90())
    if params["policy"]:
        steps.append(POLICIES.get(str(params["policy"]))(params))
    if params["crop_scale"]:
        steps.append(v2.RandomResizedCrop(size, scale=params["crop_scale"], ratio=params["crop_ratio"],
                                          antialias=True))
    if params["degrees"] or params["translate"] or params["scale"]:
        t = params["translate"]
        steps.append(v2.RandomAffine(degrees=params["degrees"], translate=(t, t) if t else None,
                                     scale=params["scale"]))
    jitter = {k: params[k] for k in ("brightness", "contrast", "saturation", "hue") if params[k]}
    if jitter:
        steps.append(v2.ColorJitter(**jitter))
    if params["erase_p"]:
        steps.append(v2.RandomErasing(p=params["erase_p"], scale=params["erase_scale"], value=0))
    return v2.Compose(steps) if steps else v2.Identity()


def get_augmentation(name: str, size: int, params: Mapping[str, Any] | None = None) -> Transform:
    """The training transform of preset ``name`` at ``size`` px, with parameter ``params`` overrides."""
    return build_augmentation(augmentation_params(name, params), size)


def loader_augmentation(train_cfg: TrainConfig, size: int) -> Transform | None:
    """The per-image training transform of ``train_cfg`` (None when ``train.augmentation.mode`` is ``batch``)."""
    aug = train_cfg.augmentation
    if aug.mode == "batch":
        return None
    return get_augmentation(aug.preset, size, aug.params)


def to_model_input(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` → normalised float32 in channels-last memory format."""
    x = images.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous(memory_format=torch.channels_last)
