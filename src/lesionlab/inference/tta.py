"""Test-time augmentation policies: views of a batch whose predicted probabilities are averaged.

A policy is a registered name (``none``, ``flips``, ``d4``) or any ``+``-joined list of registered views, e.g.
``eval.tta=identity+hflip+rot90`` (the string is stored with the model, so the predictor uses the same views).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from lesionlab.registry import Registry, UnknownNameError

if TYPE_CHECKING:  # the views only call tensor methods: checking a policy name needs no PyTorch
    import torch

View = Callable[["torch.Tensor"], "torch.Tensor"]
TTA_POLICIES: Registry[tuple[View, ...]] = Registry("TTA policy")
TTA_VIEWS: Registry[View] = Registry("TTA view")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _hflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def _vflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-2)


def _rot(k: int) -> View:
    def view(x: torch.Tensor) -> torch.Tensor:
        return x.rot90(k, dims=(-2, -1))

    return view


def _rot_hflip(k: int) -> View:
    def view(x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1).rot90(k, dims=(-2, -1))

    return view


TTA_POLICIES.add("none", (_identity,), help="the image as is")
TTA_POLICIES.add("flips", (_identity, _hflip, _vflip, _rot(2)), help="identity, horizontal, vertical and both flips")
TTA_POLICIES.add("d4", tuple([_rot(k) for k in range(4)] + [_rot_hflip(k) for k in range(4)]),
                 help="all 8 flips and 90° rotations (dihedral group)")


for _name, _view, _help in [
    ("identity", _identity, "the image as is"),
    ("hflip", _hflip, "mirror left-right"),
    ("vflip", _vflip, "mirror top-bottom"),
    ("rot90", _rot(1), "rotate 90°"),
    ("rot180", _rot(2), "rotate 180°"),
    ("rot270", _rot(3), "rotate 270°"),
    ("transpose", _rot_hflip(1), "mirror along the main diagonal"),
    ("antitranspose", _rot_hflip(3), "mirror along the anti-diagonal"),
]:
    TTA_VIEWS.add(_name, _view, help=_help)


def get_tta(name: str) -> tuple[View, ...]:
    """The views of a registered policy, or of a ``+``-joined list of view names (``identity+hflip+rot90``)."""
    if name in TTA_POLICIES:
        return TTA_POLICIES.get(name)
    parts = [p.strip() for p in str(name).split("+")]
    if len(set(parts)) != len(parts):
        raise ValueError(f"TTA views repeat in {name!r}; list each view once")
    unknown = [p for p in parts if p not in TTA_VIEWS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*TTA_POLICIES.names(), *TTA_VIEWS.names()], n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"Unknown TTA policy or view {unknown[0]!r} in {name!r}.{hint} Policies: "
                               f"{', '.join(TTA_POLICIES.names())}; or join views with '+': "
                               f"{', '.join(TTA_VIEWS.names())}.")
    return tuple(TTA_VIEWS.get(p) for p in parts)


def same_view(a: View, b: View) -> bool:
    """Whether two views move pixels alike (registered views are distinct functions, so they are compared on a
    small probe tensor)."""
    import torch

    probe = torch.arange(12.0).reshape(1, 1, 3, 4)
    out, ref = a(probe), b(probe)
    return out.shape == ref.shape and bool(torch.equal(out, ref))

