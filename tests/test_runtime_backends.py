"""Runtime backends: every output of one engine call (logits + cam) on ONNX Runtime and OpenVINO;
OpenVINO FP32 / INT8 (and bf16 where the CPU has it) through the Predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cam_bundle import make_cam_bundle
from tiny_bundle import reference_logits

from dsedge.bundle import load_bundle
from dsedge.errors import DsedgeError
from dsedge.runtime.backends import all_outputs, select_runner


@pytest.fixture(scope="module")
def cam_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cam_bundle(tmp_path_factory.mktemp("cam") / "bundle", int8=True)


def batch(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 32, 32)).astype(np.float32)


def test_onnxruntime_returns_logits_and_cam_from_one_call(cam_bundle: Path) -> None:
    runner, _ = select_runner(load_bundle(cam_bundle), "onnxruntime", "fp32", output="logits")
    outs = all_outputs(runner, batch(), "logits")
    np.testing.assert_allclose(outs["logits"], reference_logits(batch()), atol=1e-5)
    assert outs["cam"].shape == (2, 3, 32, 32)
    np.testing.assert_allclose(outs["cam"].mean(axis=(2, 3)), outs["logits"], atol=1e-5)  # CAM's defining property


def test_openvino_fp32_and_int8(cam_bundle: Path) -> None:
    pytest.importorskip("openvino")
    bundle = load_bundle(cam_bundle)
    fp32, _ = select_runner(bundle, "openvino", "fp32")
    assert fp32.info.backend == "openvino" and fp32.info.precision == "fp32"
    outs = all_outputs(fp32, batch(), "logits")
    np.testing.assert_allclose(outs["logits"], reference_logits(batch()), atol=1e-4)
    np.testing.assert_allclose(outs["cam"].mean(axis=(2, 3)), outs["logits"], atol=1e-4)
    int8, _ = select_runner(bundle, "openvino", "int8")
    assert int8.info.precision == "int8" and int8.info.extra["file"] == "model.int8.onnx"
    q = all_outputs(int8, batch(), "logits")["logits"]
    assert np.abs(q - reference_logits(batch())).max() < 0.1  # INT8 rounding, not a different model
    fp32.close()
    int8.close()


def test_openvino_bf16_where_supported(cam_bundle: Path) -> None:
    ovr = pytest.importorskip("dsedge.engines.openvino_runner")
    pytest.importorskip("openvino")
    if not ovr.native_bf16():
        pytest.skip("no AMX / avx512_bf16 on this CPU")
    runner, _ = select_runner(load_bundle(cam_bundle), "openvino", "bf16")
    assert runner.info.precision == "bf16"
    assert np.abs(runner.infer(batch()) - reference_logits(batch())).max() < 0.1
    runner.close()


def test_unknown_choices_and_bf16_elsewhere(cam_bundle: Path) -> None:
    bundle = load_bundle(cam_bundle)
    with pytest.raises(DsedgeError, match="unknown backend"):
        select_runner(bundle, "tpu", None)
    with pytest.raises(DsedgeError, match="bf16 runs on the openvino backend only"):
        select_runner(bundle, "onnxruntime", "bf16")
