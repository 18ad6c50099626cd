"""Input-quality checks: real-looking images pass, black/blank/tiny/thin/blurred ones are flagged,
and so are images that are not dermoscopy at all (noise, stripes, checkerboards, flat colours, a landscape)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dsedge.runtime.quality import (
    NOT_DERMOSCOPY,
    QualityThresholds,
    assess,
    assess_size,
    autocorrelation,
    check_files,
    laplacian_variance,
    periodicity,
)
from dsedge.utils.images import load_rgb

ROOT = Path(__file__).resolve().parents[1]


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


def _benchmark():  # noqa: ANN202 - the synthetic set lives with the threshold measurements
    spec = importlib.util.spec_from_file_location("quality_thresholds", ROOT / "benchmarks" / "quality_thresholds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


NON_DERMOSCOPY = _benchmark().non_dermoscopy_images()


@pytest.mark.parametrize("name", sorted(NON_DERMOSCOPY))
def test_non_dermoscopy_images_are_flagged(name: str) -> None:
    report = assess(NON_DERMOSCOPY[name])
    assert report.flags == [NOT_DERMOSCOPY], report.to_dict()
    assert report.notes[0].startswith("not a dermoscopy image: ")


@pytest.mark.parametrize("seed", range(4))
def test_lesion_like_images_pass_at_every_size(seed: int) -> None:
    from lesion_images import lesion_image

    for size in ((640, 480), (200, 160), (150, 150), (2400, 1600)):
        assert assess(lesion_image(size, seed=seed)).ok, (size, assess(lesion_image(size, seed=seed)).to_dict())


def test_texture_measures_separate_noise_and_stripes_from_photographs() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(128, 40, (256, 256)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(noise.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(4)),
                        dtype=np.float32)
    stripes = np.tile((np.arange(256) // 8 % 2 * 200.0).astype(np.float32), (256, 1))
    assert autocorrelation(noise) < 0.1 < 0.9 < autocorrelation(smooth)
    assert periodicity(stripes) > 8 > 3 > periodicity(smooth)
    assert autocorrelation(np.full((8, 8), 3.0, np.float32)) == 1.0 and periodicity(np.zeros((4, 4))) == 0.0


def test_dermoscopy_check_can_be_turned_off_and_does_not_hide_other_flags() -> None:
    noise = NON_DERMOSCOPY["uniform noise"]
    assert assess(noise, QualityThresholds(dermoscopy_check=False)).ok
    black = assess(Image.new("RGB", (640, 480)))
    assert black.flags == ["too_dark", "low_contrast", "blurry"]  # said for what it is, not "not dermoscopy"


def _real_images(limit_per_set: int) -> list[Path]:
    sets = []
    isic = os.environ.get("DSEDGE_ISIC2017")
    if isic:
        sets += [Path(isic) / "ISIC-2017_Training_Data", Path(isic) / "ISIC-2017_Validation_Data"]
    for var in ("DSEDGE_ISIC_FULLRES", "DSEDGE_HAM10000"):
        if os.environ.get(var):
            sets.append(Path(os.environ[var]) / ("images" if var == "DSEDGE_HAM10000" else ""))
    files = []
    for folder in sets:
        found = sorted(p for p in folder.glob("*.jpg") if "superpixels" not in p.name) if folder.is_dir() else []
        files += found[:: max(1, len(found) // limit_per_set)]
    return files


@pytest.mark.slow
def test_real_dermoscopy_images_pass_every_check() -> None:
    """A sample of every real set (the full 8,141-image run is benchmarks/quality_thresholds.py)."""
    files = _real_images(limit_per_set=150)
    if not files:
        pytest.skip("real images not available (set DSEDGE_ISIC2017 / DSEDGE_ISIC_FULLRES / DSEDGE_HAM10000)")
    flagged = {p.name: r.flags for p in files if (r := assess(load_rgb(p))).flags}
    assert not flagged, flagged
