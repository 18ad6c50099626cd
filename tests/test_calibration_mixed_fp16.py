"""`model.int8-fp16.onnx`: under strong typing its non-quantized layers must be FP16, SimAM FP32.

The proof is read from the graph's types (strict ONNX shape inference), as
TensorRT's strongly typed parser reads them: every compute node (quantized
convs, kept-float depthwise convs, residual adds, ReLUs, pooling, the head)
produces float16; each `dsedge::SimAM` call takes and returns float32 (its
reductions run FP32); graph inputs/outputs stay float32. It must also obey the
Q/DQ rules and follow the FP32-float INT8 model in ONNX Runtime.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from dsedge.bundle import load_bundle
from dsedge.calibration.int8 import INT8_NAME, calibrate_bundle
from dsedge.calibration.mixed_fp16 import (
    MIXED_NAME,
    MIXED_PRECISION,
    float_precision_report,
    to_mixed_fp16,
)
from dsedge.calibration.rules import check_qdq_rules


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init DS-ResNet50 at 32 px, INT8 with the depthwise convs kept float (synthetic calibration)."""
    from dsedge.export.bundle import export_bundle

    out = export_bundle(None, tmp_path_factory.mktemp("mixed") / "bundle", model_name="ds_resnet50",
                        random_init=True, image_size=32)
    calibrate_bundle(out, None, synthetic=True, num_images=8, keep_fp=["depthwise"])
    return out


def test_bundle_lists_the_mixed_twin(calibrated: Path) -> None:
    b = load_bundle(calibrated)  # sha256 verified
    entry = b.artifacts[MIXED_NAME]
    assert entry["precision"] == MIXED_PRECISION and entry["source"] == INT8_NAME
    assert entry["float_precision"] == "fp16" and entry["reductions"] == "fp32"
    assert b.manifest["calibration"]["mixed_fp16"] == MIXED_NAME
    assert b.require("onnx", "int8").name == INT8_NAME  # the twin does not shadow the INT8 model


def test_graph_types_prove_fp16_float_layers_and_fp32_simam(calibrated: Path) -> None:
    mixed = onnx.load(str(calibrated / MIXED_NAME))
    report = float_precision_report(mixed)
    assert report["fp32_compute"] == []
    depthwise = [n.name for n in mixed.graph.node if n.op_type == "Conv"
                 and next((a.i for a in n.attribute if a.name == "group"), 1) > 1]
    assert len(depthwise) == 32 and set(depthwise) <= set(report["fp16_compute"])  # kept float, now FP16
    assert sum(n.op_type == "Add" for n in mixed.graph.node if n.name in report["fp16_compute"]) == 32  # residual + dual-scale
    assert len(report["simam_calls"]) == 32
    assert all(c["input"] == TensorProto.FLOAT and c["output"] == TensorProto.FLOAT for c in report["simam_calls"])
    assert report["dequantize_output_types"] == ["FLOAT16"]
    assert report["io_types"] == ["FLOAT", "FLOAT"]
    assert check_qdq_rules(mixed) == []
    assert [f.name for f in mixed.functions] == ["SimAM"]


def test_the_fp32_float_model_is_what_strong_typing_would_run_in_fp32(calibrated: Path) -> None:
    """Why the twin exists: the plain Q/DQ model's kept-float layers produce float32."""
    report = float_precision_report(onnx.load(str(calibrated / INT8_NAME)))
    assert report["fp16_compute"] == [] and len(report["fp32_compute"]) > 32


def test_mixed_follows_the_int8_model_in_onnx_runtime(calibrated: Path) -> None:
    from dsedge.engines.ort_runner import OrtRunner

    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with OrtRunner(calibrated / INT8_NAME, "int8") as q, OrtRunner(calibrated / MIXED_NAME, "int8") as m:
        a, b = q.infer(x), m.infer(x)
    assert b.dtype == np.float32 and np.all(np.isfinite(b))
    assert np.abs(a - b).max() <= 0.05 * max(1.0, float(np.abs(a).max()))


def test_conversion_leaves_the_source_alone_and_no_mixed_drops_a_stale_twin(calibrated: Path, tmp_path: Path) -> None:
    src = onnx.load(str(calibrated / INT8_NAME))
    before = src.SerializeToString()
    to_mixed_fp16(src)
    assert src.SerializeToString() == before
    copy = Path(shutil.copytree(calibrated, tmp_path / "b"))
    calibrate_bundle(copy, None, synthetic=True, num_images=8, mixed_fp16=False)
    b = load_bundle(copy)
    assert MIXED_NAME not in b.artifacts and not (copy / MIXED_NAME).exists()
    assert b.manifest["calibration"]["mixed_fp16"] is None
