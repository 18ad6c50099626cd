"""Input-quality checks: real-looking images pass, black/blank/tiny/thin/blurred ones are flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dsedge.runtime.quality import (
    QualityThresholds,
    assess,
    assess_size,
    check_files,
    laplacian_variance,
)


def lesion_like(size: tuple[int, int] = (640, 480), seed: int = 0) -> Image.Image:
    """Skin-coloured background, a dark irregular blob and fine texture: passes every check."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - w / 2) / (w / 4), (yy - h / 2) / (h / 4))
    base = np.stack([np.full((h, w), 200.0), np.full((h, w), 150.0), np.full((h, w), 130.0)], -1)
    base[r < 1] *= 0.45
    base += rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def test_realistic_image_passes() -> None:
    report = assess(lesion_like())
    assert report.ok, report.to_dict()
    assert set(report.measures) >= {"brightness", "contrast", "sharpness", "aspect"}


@pytest.mark.parametrize(
    "image,flag",
    [
        (Image.new("RGB", (640, 480)), "too_dark"),
        (Image.new("RGB", (640, 480), (255, 255, 255)), "too_bright"),
        (Image.new("RGB", (640, 480), (128, 120, 110)), "low_contrast"),
        (lesion_like((20, 10)), "too_small"),
        (lesion_like((1200, 300)), "extreme_aspect"),
        (lesion_like().filter(ImageFilter.GaussianBlur(8)), "blurry"),
    ],
    ids=["black", "white", "blank", "tiny", "thin", "blurred"],
)
def test_bad_inputs_are_flagged(image: Image.Image, flag: str) -> None:
    report = assess(image)
    assert not report.ok and flag in report.flags


def test_laplacian_variance_drops_with_blur() -> None:
    img = lesion_like()
    sharp = laplacian_variance(np.asarray(img.convert("L"), dtype=np.float32))
    soft = laplacian_variance(np.asarray(img.filter(ImageFilter.GaussianBlur(3)).convert("L"), dtype=np.float32))
    assert sharp > 10 * soft
    assert laplacian_variance(np.zeros((2, 2), np.float32)) == 0.0


def test_size_only_report_and_thresholds_roundtrip() -> None:
    assert assess_size(12000, 1).flags == ["too_small", "extreme_aspect"]
    t = QualityThresholds.from_dict({"min_side": 8, "unknown": 1})
    assert t.min_side == 8 and QualityThresholds.from_dict(t.to_dict()) == t
    assert assess(lesion_like((64, 64)), t).ok


def test_check_files_reports_only_failures(tmp_path: Path) -> None:
    good, dark, broken = tmp_path / "good.png", tmp_path / "dark.png", tmp_path / "broken.jpg"
    lesion_like().save(good)
    Image.new("RGB", (300, 300)).save(dark)
    broken.write_bytes(b"nope")
    out = check_files([good, dark, broken])
    assert str(good) not in out and "too_dark" in out[str(dark)] and out[str(broken)] == ["unreadable"]
