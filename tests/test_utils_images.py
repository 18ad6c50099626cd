"""Image loading: mode conversion for odd formats, clear errors for corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dsedge.errors import DataError
from dsedge.utils.images import check_geometry, load_image, load_rgb


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


def test_thin_image_is_refused_before_decoding(tmp_path: Path) -> None:
    """A 134-byte 1x12000 PNG made preprocessing allocate 3.4 GB; it must fail fast and clearly."""
    path = tmp_path / "thin.png"
    Image.new("RGB", (1, 12000), (90, 60, 40)).save(path, optimize=True)
    assert path.stat().st_size < 1000
    with pytest.raises(DataError, match=r"thin.png.*1x12000.*aspect ratio 12000"):
        load_rgb(path)
    with pytest.raises(DataError, match="aspect ratio"):
        check_geometry(60000, 1, "wide.png")


def test_ordinary_aspect_ratios_pass(tmp_path: Path) -> None:
    check_geometry(6688, 4459, "isic.jpg")  # the widest ISIC 2017 original (1.5:1)
    check_geometry(1920, 1080, "16x9.jpg")
    path = tmp_path / "wide.png"
    Image.new("RGB", (100, 10), (1, 2, 3)).save(path)  # 10:1 is the limit, still loadable
    assert load_rgb(path).size == (100, 10)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255  # left half white
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.image.size == (10, 20) and loaded.exif_transposed
    top = np.asarray(loaded.image)[:5].mean()
    assert top > 200  # the white half is now on top


def test_icc_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    from PIL import ImageCms

    srgb = ImageCms.createProfile("sRGB")
    path = tmp_path / "icc.png"
    img = Image.new("RGB", (8, 8), (120, 80, 60))
    img.save(path, icc_profile=ImageCms.ImageCmsProfile(srgb).tobytes())
    loaded = load_image(path)
    assert loaded.icc_converted  # sRGB -> sRGB: converted, values kept
    assert np.abs(np.asarray(loaded.image).astype(int) - [120, 80, 60]).max() <= 2


def _noise(path: Path, size: tuple[int, int] = (64, 48), fmt: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)
    return path


def test_image_problem_finds_truncation_and_strips_in_milliseconds(tmp_path: Path) -> None:
    """Issue 26: headers-only passed a truncated JPEG and a 12:1 strip; training then failed mid-epoch or never."""
    from dsedge.utils.images import image_problem

    for ext in ("jpg", "png"):
        good = _noise(tmp_path / f"good.{ext}")
        assert image_problem(good) is None
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.7)])
        with Image.open(cut) as im:
            assert im.size == (64, 48)  # the header alone looks fine
        assert image_problem(cut).startswith("corrupt or truncated")
    assert "aspect ratio 12:1 is above the 10:1 limit" in image_problem(_noise(tmp_path / "strip.png", (1200, 100)))
    (tmp_path / "text.jpg").write_text("not an image")
    assert image_problem(tmp_path / "text.jpg") == "not an image"


def test_image_problem_accepts_a_jpeg_with_a_trailer(tmp_path: Path) -> None:
    """Some cameras append data after the end marker: decoded in full, not refused."""
    from dsedge.utils.images import image_problem

    path = _noise(tmp_path / "t.jpg")
    path.write_bytes(path.read_bytes() + b"\x00" * 5000)
    assert image_problem(path) is None
