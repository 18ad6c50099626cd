"""The torch-free runtime preprocessing equals the training-eval transform within 1e-5 on real images.

This is the contract that lets a device run the exported model on exactly the
tensors it was evaluated on: `dsedge.runtime.preprocess` (NumPy + Pillow)
against `dsedge.data.transforms.eval_transform` (torchvision), on the
full-resolution ISIC JPEGs (up to 3872 x 2592, both orientations of the
resize rule) and on real ISIC 2017 validation images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsedge.config import PreprocessConfig
from dsedge.data.transforms import eval_transform
from dsedge.runtime.preprocess import preprocess_files, preprocess_image
from dsedge.utils.images import load_rgb

CONFIGS = [PreprocessConfig(), PreprocessConfig.for_size(299), PreprocessConfig(resize=72, crop=64)]


def _check(paths: list[Path], cfg: PreprocessConfig) -> float:
    tf = eval_transform(cfg)
    worst = 0.0
    for p in paths:
        img = load_rgb(p)
        ours = preprocess_image(img, cfg.to_dict())
        ref = tf(img).numpy()
        assert ours.shape == ref.shape == (3, cfg.crop, cfg.crop) and ours.dtype == np.float32
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst <= 1e-5, f"max |runtime - eval_transform| = {worst}"
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("cfg", CONFIGS, ids=["224", "299", "64"])
def test_fullres_images_match_eval_transform(fullres_dir: Path, cfg: PreprocessConfig) -> None:
    paths = sorted(fullres_dir.glob("*.jpg"))
    assert len(paths) == 7
    _check(paths, cfg)


@pytest.mark.slow
def test_isic_validation_images_match_eval_transform(isic_root: Path) -> None:
    paths = sorted((isic_root / "ISIC-2017_Validation_Data").glob("*.jpg"))[:40]
    assert paths, "no validation images found"
    _check(paths, PreprocessConfig())


def test_batch_helper_and_non_rgb_inputs(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 255, (40, 70, 4), dtype=np.uint8), "RGBA")
    gray = Image.fromarray(rng.integers(0, 255, (90, 50), dtype=np.uint8), "L")
    rgba.save(tmp_path / "a.png")
    gray.save(tmp_path / "b.png")
    cfg = PreprocessConfig(resize=36, crop=32)
    batch = preprocess_files([tmp_path / "a.png", tmp_path / "b.png"], cfg.to_dict())
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == np.float32
    _check([tmp_path / "a.png", tmp_path / "b.png"], cfg)


def test_thin_in_memory_image_is_refused_before_resizing() -> None:
    """Issue 14.6: the shorter side was scaled without an aspect cap (3.4 GB for 1x12000)."""
    from PIL import Image

    from dsedge.errors import DataError

    with pytest.raises(DataError, match="aspect ratio"):
        preprocess_image(Image.new("RGB", (12000, 1)), PreprocessConfig().to_dict())


def test_dihedral_views_are_the_eight_orientations_of_each_image() -> None:
    from dsedge.runtime.preprocess import dihedral_views

    batch = np.random.default_rng(0).random((2, 3, 5, 5)).astype(np.float32)
    views = dihedral_views(batch)
    assert views.shape == (16, 3, 5, 5) and views.dtype == np.float32
    np.testing.assert_array_equal(views[0], batch[0])
    np.testing.assert_array_equal(views[8], batch[1])  # an image's views are consecutive rows
    for i in range(8):  # same pixels per channel, moved, never mixed across channels or images
        np.testing.assert_array_equal(np.sort(views[i].reshape(3, -1)), np.sort(batch[0].reshape(3, -1)))
    assert len({v.tobytes() for v in views[:8]}) == 8
    np.testing.assert_array_equal(views[1][:, 0, 0], batch[0][:, 0, -1])  # 90 degrees counter-clockwise
    np.testing.assert_array_equal(views[4], batch[0][:, :, ::-1])  # the mirror image
    assert dihedral_views(batch, views=2).shape == (4, 3, 5, 5)
    with pytest.raises(ValueError, match="square"):
        dihedral_views(np.zeros((1, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="views"):
        dihedral_views(batch, views=9)
