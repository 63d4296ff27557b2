"""PyTorch datasets over cached uint8 arrays."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from lesionlab.data.transforms import Transform


class ArrayDataset(Dataset):
    """Rows ``indices`` of an ``(N, H, W, 3)`` uint8 array as ``(uint8 CHW tensor, target)`` pairs.

    With ``metadata`` (encoded patient metadata, one float row per sample, aligned with ``indices``) the items are
    ``(image, target, metadata)`` triples, the batches a metadata-fusion model trains on.
    """

    def __init__(self, images: np.ndarray, indices: np.ndarray, targets: np.ndarray,
                 transform: Transform | None = None, metadata: np.ndarray | None = None) -> None:
        if len(indices) != len(targets):
            raise ValueError("indices and targets must have the same length")
        if metadata is not None and len(metadata) != len(indices):
            raise ValueError(f"metadata has {len(metadata)} rows for {len(indices)} samples")
        self.metadata = None if metadata is None else torch.as_tensor(np.asarray(metadata, dtype=np.float32))
        self.images = images
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, torch.Tensor]:
        img = torch.from_numpy(np.array(self.images[self.indices[i]])).permute(2, 0, 1)
        if self.transform is not None:
            img = self.transform(img)
        if self.metadata is not None:
            return img, int(self.targets[i]), self.metadata[i]
        return img, int(self.targets[i])
