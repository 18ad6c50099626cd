"""Robust image loading (torch-free): every pixel path in dsedge goes through `load_rgb`.

Dermatoscopes and archives produce JPEGs, PNGs with alpha, palette images,
CMYK scans and 16-bit grayscale. We convert each to 8-bit RGB (the model's
input) and turn decoder failures — a truncated or corrupt file — into a
`DataError` naming the file instead of a Pillow traceback.

Two things happen here so that training, calibration and every runtime see the
same pixels: the EXIF orientation is applied (a phone-attached dermatoscope
stores portrait shots rotated) and an embedded ICC profile is converted to sRGB
(the colour space the ISIC images and ImageNet statistics assume). None of the
2,507 ISIC 2017 / HAM10000 images in ../shared/data carries either, so neither
changes what existing models were trained on.

Geometry is checked from the header, before decoding: preprocessing scales the
shorter side to 256, so a 134-byte 1x12000 PNG became a 256 x 3,072,000 image
(3.4 GB; 1x60000 raised MemoryError). `check_geometry` refuses an aspect ratio
above `MAX_ASPECT_RATIO` (10:1; real dermoscopy images are 1:1 to 16:9) with a
`DataError` naming the file. The runtime's quality checks
(`dsedge.runtime.quality`) flag much milder ratios as "cannot assess".
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from dsedge.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# A decompression bomb check still applies; full-resolution dermoscopy images are
# up to ~30 MP, well inside Pillow's default limit.
MAX_ASPECT_RATIO = 10.0
_EXIF_ORIENTATION = 0x0112
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@dataclass
class LoadedImage:
    """An 8-bit RGB image and what loading did to it (reported by the runtime's quality block)."""

    image: Image.Image
    original_size: tuple[int, int]  # (width, height) as stored, before EXIF rotation
    exif_transposed: bool = False
    icc_converted: bool = False


def check_geometry(width: int, height: int, source: str | os.PathLike) -> None:
    """Refuse empty images and aspect ratios above `MAX_ASPECT_RATIO` (they explode the resize)."""
    if width < 1 or height < 1:
        raise DataError(f"{source}: image has no pixels ({width}x{height})")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise DataError(
            f"{source}: {width}x{height} image, aspect ratio {ratio:.0f}:1 is above the "
            f"{MAX_ASPECT_RATIO:.0f}:1 limit (scaling its shorter side to the model size would need "
            f"a {_scaled_pixels(width, height) / 1e6:.0f}-megapixel image)",
            "crop the lesion to a roughly square image",
        )


def _scaled_pixels(width: int, height: int, shorter: int = 256) -> float:
    return shorter * shorter * max(width, height) / min(width, height)


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


def to_srgb(img: Image.Image) -> tuple[Image.Image, bool]:
    """Convert an RGB image with an embedded ICC profile to sRGB; (image, converted?)."""
    icc = img.info.get("icc_profile")
    if not icc:
        return img, False
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(img, src, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img, False  # a broken profile: keep the pixels as they are (what a browser does)
    return out, True


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Open, check geometry, decode, orient, convert to sRGB RGB; or raise `DataError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p} is a folder, not an image" if p.is_dir() else f"image not found: {p}")
    try:
        with Image.open(p) as img:
            check_geometry(*img.size, p)  # from the header: before any pixel is decoded
            size = img.size
            img.load()  # force a full decode: truncated files fail here, not later in a worker
            icc = img.info.get("icc_profile")
            oriented = ImageOps.exif_transpose(img)
            transposed = img.getexif().get(_EXIF_ORIENTATION, 1) not in (1, None)
            rgb = to_rgb(oriented)
            if icc:
                rgb.info["icc_profile"] = icc
            rgb, converted = to_srgb(rgb)
            return LoadedImage(rgb, size, transposed, converted)
    except UnidentifiedImageError as e:
        raise DataError(f"not an image (or an unsupported format): {p}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"corrupt or truncated image {p}: {e}") from e
    except Image.DecompressionBombError as e:
        raise DataError(f"image too large to decode safely: {p}: {e}") from e


#: How far from the end of a file its end-of-image marker is looked for (JPEG EOI, PNG IEND).
_TAIL_BYTES = 4096
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


def image_problem(path: str | os.PathLike) -> str | None:
    """Why an image would fail in training, found in milliseconds; None when it is fine.

    The up-front check before training used to open headers only, so a truncated
    JPEG (header intact, pixels cut) and a 1x12000 strip passed it and failed
    mid-epoch in a worker, or never (issue 26). This checks the header geometry
    (`check_geometry`), and for JPEG/PNG that the file ends with its end marker;
    a file without one (a trailer some cameras append) is decoded in full to be sure.
    """
    p = Path(path)
    try:
        with Image.open(p) as img:
            check_geometry(*img.size, p)
            end = _END_MARKERS.get(img.format or "")
            with open(p, "rb") as f:
                f.seek(max(0, p.stat().st_size - _TAIL_BYTES))
                tail = f.read()
            if end is None or end not in tail:
                img.load()
    except DataError as e:
        return e.message.replace(f"{p}: ", "", 1).split(" (scaling")[0]
    except UnidentifiedImageError:
        return "not an image"
    except Image.DecompressionBombError:
        return "too large to decode safely"
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for a broken file
        return f"corrupt or truncated: {' '.join(str(e).split()) or type(e).__name__}"
    return None


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """`load_image(path).image`: the RGB pixels every training and runtime path uses."""
    return load_image(path).image
