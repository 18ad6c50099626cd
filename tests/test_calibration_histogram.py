"""The linear-time percentile histogram gives ONNX Runtime's own ranges."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from dsedge.config import PreprocessConfig
    from dsedge.export.bundle import export_bundle
    from dsedge.models import create_model
    from dsedge.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hist")
    ckpt = save_checkpoint(root / "ckpt", create_model("ds_resnet50").eval(),
                           {"model": "ds_resnet50", "classes": ["MEL", "NV", "SK"],
                            "preprocessing": PreprocessConfig.for_size(32).to_dict(), "model_kwargs": {}})
    return export_bundle(ckpt, root / "bundle", parity_images=2) / "model.onnx"


def test_fast_histogram_ranges_equal_onnxruntime_ranges(model: Path, tmp_path: Path,
                                                       tiny_isic_session: Path) -> None:
    from dsedge.calibration import reader as rd
    from dsedge.calibration.int8 import compute_ranges, ranges_minmax
    from dsedge.config import PreprocessConfig
    from dsedge.data import load_split

    pre = PreprocessConfig.for_size(32).to_dict()
    cset = rd.select_images(load_split(tiny_isic_session, "train", classes=["MEL", "NV", "SK"]), 12, 0)
    ranges = {}
    for method, fast in (("percentile", True), ("percentile", False), ("minmax", False)):
        work = tmp_path / f"{method}{fast}"
        work.mkdir()
        # chunks of 4 images: the second and third chunks take the path that differs
        ranges[method, fast] = ranges_minmax(compute_ranges(model, cset, pre, method, work, chunk_images=4,
                                                            batch=4, fast_histogram=fast))
        shutil.rmtree(work)
    fast, ort, true = ranges["percentile", True], ranges["percentile", False], ranges["minmax", False]
    assert fast.keys() == ort.keys() and len(fast) > 50
    # 12 images of 32 px hold a few thousand values per tensor: the 99.99th percentile is about the
    # largest, which ORT's grown edges can drop (next test). So: ORT's <= ours <= the true max
    same = 0
    for name, (lo, hi) in ort.items():
        width = max(abs(lo), abs(hi)) / 2048
        t_hi = max(abs(true[name][0]), abs(true[name][1]))
        assert hi - width - 1e-7 <= fast[name][1] <= t_hi + 1e-6, name
        same += abs(fast[name][1] - hi) <= width + 1e-7
    assert same >= 0.8 * len(ort)


def test_fast_histogram_counts_what_onnxruntime_counts() -> None:
    """Same bins, counts and 99.99th percentile; where ORT's float32 `arange` of new edges ends below a
    chunk's maximum it drops that one value, the uniform path keeps it (one value per chunk at most)."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    from dsedge.calibration.histogram import _collector_class

    rng = np.random.default_rng(0)
    relu = [np.maximum(rng.standard_normal((4, 64, 8, 8)), 0).astype(np.float32) * s for s in (1.0, 2.5, 0.7, 3.1)]
    ort = HistogramCollector("percentile", True, 2048, 128, 99.99, "same")
    fast = _collector_class()("percentile", True, 2048, 128, 99.99, "same")
    for chunk in relu:
        ort.collect({"t": [chunk]})
        fast.collect({"t": [chunk]})
    h_ort, e_ort, *_ = ort.histogram_dict["t"]
    h_fast, e_fast, *_ = fast.histogram_dict["t"]
    assert abs(len(h_ort) - len(h_fast)) <= 1
    n = min(len(h_ort), len(h_fast)) - 1
    np.testing.assert_allclose(e_fast[:n], e_ort[:n], rtol=1e-4, atol=1e-6)
    assert 0 <= h_fast.sum() - h_ort.sum() <= len(relu) - 1 and h_fast.sum() == sum(c.size for c in relu)
    # a value on a bin edge may land in the neighbouring bin (ORT's edges are float32 sums): few do
    assert np.abs(h_fast[:n] - h_ort[:n]).sum() <= 0.01 * h_ort.sum()
    width = float(e_ort[1] - e_ort[0])
    _, hi_ort, *_ = ort.compute_collection_result()["t"]
    _, hi_fast, *_ = fast.compute_collection_result()["t"]
    assert abs(float(hi_fast) - float(hi_ort)) <= 2 * width


def test_other_methods_keep_onnxruntime_collector() -> None:
    from dsedge.calibration.histogram import install_fast_histogram

    class Entropy:
        method, collector = "entropy", None

    assert install_fast_histogram(Entropy()) is False and Entropy.collector is None
    assert not install_fast_histogram(object())
