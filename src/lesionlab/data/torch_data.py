"""PyTorch datasets over cached uint8 arrays."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from lesionlab.data.transforms import Transform


class ArrayDataset(Dataset):
    """Rows ``indices`` of an ``(N, H, W, 3)`` uint8 array as ``(uint8 CHW tensor, target)`` pairs."""

    def __init__(self, images: np.ndarray, indices: np.ndarray, targets: np.ndarray,
                 transform: Transform | None = None) -> None:
        if len(indices) != len(targets):
            raise ValueError("indices and targets must have the same length")
        self.images = images
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(np.array(self.images[self.indices[i]])).permute(2, 0, 1)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[i])
