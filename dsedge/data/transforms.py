"""torchvision transforms: the evaluation preprocessing and the paper's training augmentation.

`eval_transform` is the training-side twin of `dsedge.runtime.preprocess`:
both implement `PreprocessConfig` and agree within 1e-5 (tested on real images).
"""

from __future__ import annotations

import random

import torch
from PIL import Image
from torchvision import transforms as T

from dsedge.config import PreprocessConfig

_INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


class RandomRot90:
    """Rotate by 0/90/180/270 degrees, chosen uniformly (lossless, no interpolation)."""

    _OPS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)

    def __call__(self, img: Image.Image) -> Image.Image:
        op = random.choice(self._OPS)
        return img if op is None else img.transpose(op)

    def __repr__(self) -> str:
        return "RandomRot90()"


def eval_transform(cfg: PreprocessConfig | None = None) -> T.Compose:
    cfg = cfg or PreprocessConfig()
    return T.Compose(
        [
            T.Resize(cfg.resize, interpolation=_INTERP[cfg.interpolation]),
            T.CenterCrop(cfg.crop),
            T.ToTensor(),
            T.Normalize(cfg.mean, cfg.std),
        ]
    )


def train_transform(cfg: PreprocessConfig | None = None, scale: tuple[float, float] = (0.8, 1.2)) -> T.Compose:
    """Paper augmentation: rotations 90/180/270, horizontal/vertical flips, random scaling."""
    cfg = cfg or PreprocessConfig()
    return T.Compose(
        [
            T.Resize(cfg.resize, interpolation=_INTERP[cfg.interpolation]),
            RandomRot90(),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            T.RandomAffine(degrees=0, scale=scale, interpolation=_INTERP[cfg.interpolation]),
            T.CenterCrop(cfg.crop),
            T.ToTensor(),
            T.Normalize(cfg.mean, cfg.std),
        ]
    )


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: derive Python's RNG (used by RandomRot90) from torch's seed."""
    random.seed(torch.initial_seed() % 2**32)
