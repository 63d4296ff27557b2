"""Augmentation presets on uint8 CHW tensors (torchvision.transforms.v2) and the one input normalisation.

:func:`to_model_input` is used by training, evaluation and the predictor alike, so preprocessing cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

from lesionlab.registry import Registry

Transform = Callable[[torch.Tensor], torch.Tensor]
AUGMENTATIONS: Registry[Callable[[int], Transform]] = Registry("augmentation")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomRot90(torch.nn.Module):
    """Rotate by a random multiple of 90° (lesions have no canonical orientation)."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(0, 4, ()).item())
        return torch.rot90(img, k, dims=(-2, -1)) if k else img


def _flips() -> list[Transform]:
    return [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90()]


@AUGMENTATIONS.register("none", help="no augmentation")
def augment_none(size: int) -> Transform:
    return v2.Identity()


@AUGMENTATIONS.register("light", help="flips and 90° rotations")
def augment_light(size: int) -> Transform:
    return v2.Compose(_flips())


@AUGMENTATIONS.register("standard", help="light + rotation, shift, zoom, brightness/contrast/saturation/hue")
def augment_standard(size: int) -> Transform:
    return v2.Compose([
        *_flips(),
        v2.RandomAffine(degrees=45, translate=(0.08, 0.08), scale=(0.9, 1.15)),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03),
    ])


@AUGMENTATIONS.register("heavy", help="standard + random resized crop and cutout")
def augment_heavy(size: int) -> Transform:
    return v2.Compose([
        *_flips(),
        v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.8, 1.25), antialias=True),
        v2.RandomAffine(degrees=45, translate=(0.08, 0.08)),
        v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.05),
        v2.RandomErasing(p=0.5, scale=(0.02, 0.12), value=0),
    ])


def get_augmentation(name: str, size: int) -> Transform:
    return AUGMENTATIONS.get(name)(size)


def to_model_input(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` → normalised float32 in channels-last memory format."""
    x = images.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous(memory_format=torch.channels_last)
