"""Image loading: mode conversion for odd formats, clear errors for corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dsedge.errors import DataError
from dsedge.utils.images import load_rgb


@pytest.mark.parametrize(
    "mode,fmt",
    [("L", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("P", "PNG"), ("LA", "PNG"), ("RGB", "JPEG")],
)
def test_modes_are_converted_to_rgb(tmp_path: Path, mode: str, fmt: str) -> None:
    path = tmp_path / f"img.{fmt.lower()}"
    Image.new("RGB", (12, 10), (200, 100, 50)).convert(mode).save(path, format=fmt)
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (12, 10)


def test_16bit_grayscale_is_rescaled_not_clipped(tmp_path: Path) -> None:
    arr = np.full((8, 8), 40000, dtype=np.uint16)  # 40000 / 65535 ~ 0.61 -> 156
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    img = load_rgb(path)
    px = np.asarray(img)
    assert img.mode == "RGB" and abs(int(px[0, 0, 0]) - 156) <= 1


def test_truncated_jpeg_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trunc.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="trunc.jpg"):
        load_rgb(path)


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jpg"
    path.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match="not an image"):
        load_rgb(path)
    with pytest.raises(DataError, match="not found"):
        load_rgb(tmp_path / "absent.jpg")
