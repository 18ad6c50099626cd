"""The torch Dataset over a `DatasetSplit`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from dsedge.data.samples import DatasetSplit
from dsedge.utils.images import load_rgb


class ImageDataset(Dataset):
    """(image tensor, label) pairs; images go through `load_rgb` (mode conversion, clear errors)."""

    def __init__(self, split: DatasetSplit, transform: Callable) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        s = self.split.samples[index]
        return self.transform(load_rgb(s.path)), s.label
