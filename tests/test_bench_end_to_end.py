"""`dsedge.bench.end_to_end`: decode / preprocess / infer / post per image, for bench.md (issue 23)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_bundle import make_tiny_bundle

from dsedge.bench.end_to_end import end_to_end
from dsedge.errors import DataError
from dsedge.export.vectors import write_vectors
from dsedge.runtime.predict import Predictor
from dsedge.runtime.timing import STAGES, attach_timings, format_timings, time_image


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tiny_bundle(tmp_path_factory.mktemp("e2e") / "bundle", crop=112, resize=128)
    write_vectors(root)
    return root


def test_default_images_are_the_vector_jpegs_and_every_stage_is_timed(bundle: Path) -> None:
    result = end_to_end(bundle, backend="onnxruntime", repeats=1)
    assert [Path(r.image).name for r in result.images] == ["fullsize.jpg", "odd_aspect.jpg", "grayscale.jpg"]
    full = result.images[0]
    assert all(getattr(full, s) > 0 for s in STAGES)
    assert full.pre_ms == pytest.approx(full.decode_ms + full.quality_ms + full.preprocess_ms)
    assert result.tensor.decode_ms == 0 and result.tensor.infer_ms > 0  # the bench's tensor-only row
    table = result.to_markdown()
    assert "| fullsize.jpg |" in table and "median of images" in table and "tensor (inference + post only)" in table
    assert result.to_dict()["median"]["total_ms"] > 0


def test_given_images_and_missing_ones(bundle: Path, tmp_path: Path) -> None:
    img = tmp_path / "lesion.png"
    Image.fromarray(np.full((300, 400, 3), 120, np.uint8)).save(img)
    result = end_to_end(bundle, [img], backend="onnxruntime", repeats=2, quality_checks=False)
    assert [Path(r.image).name for r in result.images] == ["lesion.png"] and result.images[0].quality_ms == 0
    with pytest.raises(DataError, match="image not found"):
        end_to_end(bundle, [tmp_path / "nope.jpg"], backend="onnxruntime")


def test_attach_timings_skips_failed_files(bundle: Path, tmp_path: Path) -> None:
    good = bundle / "vectors" / "grayscale.jpg"
    with Predictor(bundle, backend="onnxruntime", quality_checks=False) as p:
        paths = [good, tmp_path / "missing.jpg"]
        results = p.predict(paths)
        rows = attach_timings(p, results, paths)
        assert "timings_ms" in results[0] and "timings_ms" not in results[1] and len(rows) == 1
        assert time_image(p, good).infer_ms > 0
    assert "grayscale.jpg:" in format_timings(rows)
