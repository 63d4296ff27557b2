"""Test-time augmentation policies: views of a batch whose predicted probabilities are averaged."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lesionlab.registry import Registry

View = Callable[[torch.Tensor], torch.Tensor]
TTA_POLICIES: Registry[tuple[View, ...]] = Registry("TTA policy")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _hflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def _vflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-2)


def _rot(k: int) -> View:
    def view(x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, k, dims=(-2, -1))

    return view


def _rot_hflip(k: int) -> View:
    def view(x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x.flip(-1), k, dims=(-2, -1))

    return view


TTA_POLICIES.add("none", (_identity,), help="the image as is")
TTA_POLICIES.add("flips", (_identity, _hflip, _vflip, _rot(2)), help="identity, horizontal, vertical and both flips")
TTA_POLICIES.add("d4", tuple([_rot(k) for k in range(4)] + [_rot_hflip(k) for k in range(4)]),
                 help="all 8 flips and 90° rotations (dihedral group)")


def get_tta(name: str) -> tuple[View, ...]:
    return TTA_POLICIES.get(name)
