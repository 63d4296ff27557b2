"""Prediction progress moves once per member forward pass, so an ensemble with TTA on one batch is not a frozen
"0/1 batch" bar."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lesionlab.inference import predict as predict_module
from lesionlab.inference.predict import predict_view_logits


class Member(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.members = nn.ModuleList([Member(), Member()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(m(x) for m in self.members) / 2


class Recorder:
    def __init__(self, **kwargs) -> None:
        self.kwargs, self.n = kwargs, 0
        bars.append(self)

    def update(self, n: int = 1) -> bool:
        self.n += n
        return True  # like tqdm when it redraws: a hook passing this on would replace the member's output

    def close(self) -> None:
        pass


bars: list[Recorder] = []


@pytest.mark.parametrize(("model", "members"), [(Pair(), 2), (Member(), 1)])
def test_progress_counts_member_passes(model: nn.Module, members: int, monkeypatch: pytest.MonkeyPatch) -> None:
    bars.clear()
    monkeypatch.setattr(predict_module, "tqdm", Recorder)
    images = np.zeros((5, 8, 8, 3), np.uint8)
    logits = predict_view_logits(model, images, (0.5,) * 3, (0.5,) * 3, batch_size=2, tta="flips", progress=True)
    assert logits.shape == (4, 5, 3)
    (bar,) = bars
    assert bar.kwargs["total"] == bar.n == 3 * 4 * members  # 3 batches x 4 views x members
    assert ("2 members x 4 views" if members == 2 else "4 views") in bar.kwargs["desc"]
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())  # hooks removed
