"""ONNX Runtime runner (torch-free): outputs, options and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny_bundle import BIAS, WEIGHT, tiny_model

from dsedge.engines.ort_runner import OrtRunner, best_providers
from dsedge.errors import EngineError


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(crop=8), str(path))
    return path


def test_logits_match_numpy_and_options_do_not_change_results(model_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32)
    expected = x.mean(axis=(2, 3)) @ WEIGHT.T + BIAS
    with OrtRunner(model_path) as default, OrtRunner(model_path, threads=1, allow_spinning=False) as quiet:
        assert np.allclose(default.infer(x), expected, atol=1e-5)
        assert np.array_equal(default.infer(x), quiet.infer(x))
        assert default.info.backend == "onnxruntime" and default.info.extra["provider"] == "CPUExecutionProvider"


def test_bad_inputs(model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="not found"):
        OrtRunner(tmp_path / "absent.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(EngineError, match="cannot load"):
        OrtRunner(broken)
    with pytest.raises(EngineError, match="not available"):
        best_providers("NoSuchExecutionProvider")
    with OrtRunner(model_path) as runner, pytest.raises(ValueError, match="N x 3"):
        runner.infer(np.zeros((3, 8, 8), np.float32))


def test_from_bundle_picks_the_precisions_file_and_interleaved_turns_spinning_off(tmp_path: Path) -> None:
    from tiny_bundle import make_tiny_bundle

    from dsedge.errors import BundleError

    root = make_tiny_bundle(tmp_path / "bundle", crop=8)
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    with OrtRunner.from_bundle(root, "fp16", device="cpu", threads=1, interleaved=True) as fp16, \
            OrtRunner.from_bundle(root, "fp32") as fp32:
        assert fp16.info.extra["file"] == "model.fp16.onnx" and fp16.info.extra["spin_wait"] is False
        assert fp32.info.extra["file"] == "model.onnx" and fp32.info.extra["spin_wait"] is True
        assert fp16.info.extra["provider"] == "CPUExecutionProvider"
        np.testing.assert_allclose(fp16.infer(x), fp32.infer(x), atol=1e-2)
    with pytest.raises(BundleError, match="no onnx int8"):
        OrtRunner.from_bundle(root, "int8")
