"""Robust image loading (torch-free): every pixel path in dsedge goes through `load_rgb`.

Dermatoscopes and archives produce JPEGs, PNGs with alpha, palette images,
CMYK scans and 16-bit grayscale. We convert each to 8-bit RGB (the model's
input) and turn decoder failures — a truncated or corrupt file — into a
`DataError` naming the file instead of a Pillow traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dsedge.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# A decompression bomb check still applies; full-resolution dermoscopy images are
# up to ~30 MP, well inside Pillow's default limit.


def is_image_file(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit and 32-bit integer grayscale ("I;16", "I") are rescaled by their
    bit depth, not clipped. Alpha is dropped: dermoscopy exports carry it only
    as an opaque channel. CMYK, palette and LA go through Pillow's converters.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16).astype(np.float32) / 257.0
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "I":
        arr = np.asarray(img, dtype=np.int64)
        scale = 257.0 if arr.max() > 255 else 1.0  # 16-bit data stored as 32-bit ints
        arr = np.clip(arr / scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        hi = 1.0 if arr.max() <= 1.0 else 255.0
        return Image.fromarray(np.clip(arr / hi * 255 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and convert an image to RGB, or raise `DataError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"image not found: {p}")
    try:
        with Image.open(p) as img:
            img.load()  # force a full decode: truncated files fail here, not later in a worker
            return to_rgb(img)
    except UnidentifiedImageError as e:
        raise DataError(f"not an image (or an unsupported format): {p}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"corrupt or truncated image {p}: {e}") from e
    except Image.DecompressionBombError as e:
        raise DataError(f"image too large to decode safely: {p}: {e}") from e
