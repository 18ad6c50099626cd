"""Preprocessing in NumPy + Pillow for the torch-free runtime.

Implements the one preprocessing definition (`dsedge.config.PreprocessConfig`,
recorded in every manifest): resize the shorter side to `resize` with Pillow's
bilinear filter, centre-crop `crop`, scale to [0, 1], normalise, CHW. The
training-eval path (`dsedge.data.transforms.eval_transform`, torchvision) gives
the same tensor within 1e-5; `tests/test_runtime_preprocess.py` proves it on
real images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dsedge.utils.images import check_geometry, load_rgb

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(w, h) after scaling the shorter side to `shorter`, rounding like torchvision's Resize."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def center_crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """Pillow crop box (left, top, right, bottom) of a centred `crop` square, torchvision's rounding."""
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return left, top, left + crop, top + crop


def preprocess_image(image: Image.Image, cfg: dict[str, Any]) -> np.ndarray:
    """One RGB PIL image -> float32 array 3 x crop x crop (`DataError` for a 1x12000-like image)."""
    check_geometry(*image.size, getattr(image, "filename", "") or "image")
    resize, crop = int(cfg["resize"]), int(cfg["crop"])
    w, h = resized_size(*image.size, resize)
    img = image.resize((w, h), _RESAMPLE[cfg.get("interpolation", "bilinear")])
    img = img.crop(center_crop_box(w, h, crop))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.asarray(cfg["mean"], dtype=np.float32)
    std = np.asarray(cfg["std"], dtype=np.float32)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def preprocess_files(paths: Sequence[str | Path], cfg: dict[str, Any]) -> np.ndarray:
    """Load (with clear errors for bad files) and preprocess images into an N x 3 x H x W batch."""
    return np.stack([preprocess_image(load_rgb(p), cfg) for p in paths])


#: A dermoscopy image has no canonical orientation: each of the square's 8 symmetries is a valid input.
DIHEDRAL_VIEWS = 8


def dihedral_views(batch: np.ndarray, views: int = DIHEDRAL_VIEWS) -> np.ndarray:
    """N x C x H x W (square) -> (N * views) x C x H x W: each image's first `views` orientations, in a row.

    The orientations are the identity, 90/180/270-degree rotations, and those four mirrored. They
    multiply an evaluation set of real, unseen lesions (ISIC 2017 val has 150) into `views` times as
    many valid inputs, so agreement between two models can resolve rarer disagreements; views of
    one image are correlated, so intervals must resample images, not views
    (`dsedge.comparator.agreement_interval`).
    """
    if not 1 <= views <= DIHEDRAL_VIEWS:
        raise ValueError(f"views must be 1..{DIHEDRAL_VIEWS}, got {views}")
    if batch.ndim != 4 or batch.shape[2] != batch.shape[3]:
        raise ValueError(f"dihedral views need an N x C x H x W batch of square images, got {batch.shape}")
    out = []
    for image in batch:
        turns = [np.rot90(image, k, axes=(1, 2)) for k in range(4)]
        out.extend((turns + [t[:, :, ::-1] for t in turns])[:views])
    return np.ascontiguousarray(np.stack(out), dtype=batch.dtype)
