"""The TensorRT Q/DQ rule checker: passes our recipe, catches every way a quantized model can break the rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from dsedge.calibration import reader as rd
from dsedge.calibration.int8 import EXTRA_OPTIONS, compute_ranges, quantize_with_ranges
from dsedge.calibration.rules import check_qdq_rules
from dsedge.config import PreprocessConfig

PRE = PreprocessConfig.for_size(16).to_dict()


def _simam_function() -> onnx.FunctionProto:
    """A small but faithful dsedge::SimAM body (mean, variance, sigmoid gate)."""
    c = lambda name, v: oh.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v)))  # noqa: E731
    nodes = [
        c("axes", np.array([2, 3], np.int64)),
        oh.make_node("ReduceMean", ["X", "axes"], ["mu"], keepdims=1),
        oh.make_node("Sub", ["X", "mu"], ["xc"]),
        oh.make_node("Mul", ["xc", "xc"], ["d"]),
        oh.make_node("ReduceMean", ["d", "axes"], ["v"], keepdims=1),
        c("lam", np.float32(1e-4)),
        oh.make_node("Add", ["v", "lam"], ["vl"]),
        c("four", np.float32(4.0)),
        oh.make_node("Mul", ["vl", "four"], ["den"]),
        oh.make_node("Div", ["d", "den"], ["e0"]),
        c("half", np.float32(0.5)),
        oh.make_node("Add", ["e0", "half"], ["e"]),
        oh.make_node("Sigmoid", ["e"], ["sg"]),
        oh.make_node("Mul", ["X", "sg"], ["Y"]),
    ]
    return oh.make_function("dsedge", "SimAM", ["X"], ["Y"], nodes, [oh.make_opsetid("", 18)])


def small_model(c: int = 4) -> onnx.ModelProto:
    """conv -> relu -> SimAM -> depthwise conv -> relu -> pool -> gemm, with float biases."""
    rng = np.random.default_rng(0)
    inits = []

    def w(name: str, shape: tuple[int, ...]) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name))
        return name

    nodes = [
        oh.make_node("Conv", ["input", w("w1", (c, 3, 3, 3)), w("b1", (c,))], ["t1"], name="conv1", pads=[1] * 4),
        oh.make_node("Relu", ["t1"], ["t2"], name="relu1"),
        oh.make_node("SimAM", ["t2"], ["t3"], name="simam1", domain="dsedge"),
        oh.make_node("Conv", ["t3", w("w2", (c, 1, 3, 3)), w("b2", (c,))], ["t4"], name="dw", pads=[1] * 4, group=c),
        oh.make_node("Relu", ["t4"], ["t5"], name="relu2"),
        oh.make_node("GlobalAveragePool", ["t5"], ["t6"], name="pool"),
        oh.make_node("Flatten", ["t6"], ["t7"], name="flatten"),
        oh.make_node("Gemm", ["t7", w("wf", (3, c)), w("bf", (3,))], ["logits"], name="fc", transB=1),
    ]
    graph = oh.make_graph(
        nodes, "small", [oh.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [oh.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits,
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18), oh.make_opsetid("dsedge", 1)],
                          functions=[_simam_function()], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("rules")
    model_path = tmp / "model.onnx"
    onnx.save(small_model(), model_path)
    ranges = compute_ranges(model_path, rd.synthetic_set(8, seed=0), PRE, "minmax", tmp)
    return model_path, ranges


def _quantize(calibrated: tuple[Path, Path], out: Path, **extra: object) -> onnx.ModelProto:
    model_path, ranges = calibrated
    quantize_with_ranges(model_path, out, ranges, "minmax", extra_options={**EXTRA_OPTIONS, **extra})
    return onnx.load(str(out))


def _rules(violations: list) -> set[str]:
    return {v.rule for v in violations}


def test_our_recipe_passes_and_keeps_simam_float(calibrated: tuple[Path, Path], tmp_path: Path) -> None:
    model = _quantize(calibrated, tmp_path / "int8.onnx")
    assert check_qdq_rules(model) == []
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "SimAM" in ops
    assert all(n.op_type not in ("QuantizeLinear", "DequantizeLinear") for f in model.functions for n in f.node)
    sess = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": np.zeros((2, 3, 16, 16), np.float32)})
    assert out.shape == (2, 3)


def test_asymmetric_activations_fail(calibrated: tuple[Path, Path], tmp_path: Path) -> None:
    model = _quantize(calibrated, tmp_path / "asym.onnx", ActivationSymmetric=False)
    violations = check_qdq_rules(model)
    assert "zero-point-0" in _rules(violations)
    assert any("asymmetric" in v.message for v in violations)


def test_int32_bias_fails(calibrated: tuple[Path, Path], tmp_path: Path) -> None:
    model = _quantize(calibrated, tmp_path / "bias.onnx", QuantizeBias=True)
    assert "no-int32-bias" in _rules(check_qdq_rules(model))


def _quantize_raw(calibrated: tuple[Path, Path], out: Path, *, per_channel: bool, activation: str,
                  extra_options: dict) -> Path:
    """ORT's quantize_static with settings TensorRT rejects (our own wrapper would not produce them)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model_path, ranges = calibrated
    quantize_static(str(model_path), str(out), None, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=getattr(QuantType, activation), weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, extra_options=extra_options,
                    calibration_cache_path=str(ranges))
    return out


def test_uint8_activations_fail(calibrated: tuple[Path, Path], tmp_path: Path) -> None:
    out = _quantize_raw(calibrated, tmp_path / "u8.onnx", per_channel=True, activation="QUInt8",
                        extra_options={"QuantizeBias": False})
    assert "int8-types" in _rules(check_qdq_rules(out))


def test_per_tensor_weights_fail(calibrated: tuple[Path, Path], tmp_path: Path) -> None:
    out = _quantize_raw(calibrated, tmp_path / "pt.onnx", per_channel=False, activation="QInt8",
                        extra_options=EXTRA_OPTIONS)
    violations = check_qdq_rules(out)
    assert _rules(violations) == {"per-channel-weights"}
    assert {v.node for v in violations} == {"conv1", "dw"}


def test_qdq_inside_simam_fails(calibrated: tuple[Path, Path], tmp_path: Path) -> None:
    model = _quantize(calibrated, tmp_path / "int8.onnx")
    fn = model.functions[0]
    fn.node.extend([
        oh.make_node("Constant", [], ["qs"], value=numpy_helper.from_array(np.array(0.1, np.float32))),
        oh.make_node("Constant", [], ["qz"], value=numpy_helper.from_array(np.array(0, np.int8))),
        oh.make_node("QuantizeLinear", ["sg", "qs", "qz"], ["sg_q"]),
        oh.make_node("DequantizeLinear", ["sg_q", "qs", "qz"], ["sg_dq"]),
    ])
    violations = check_qdq_rules(model)
    assert _rules(violations) == {"float-functions"}
    assert violations[0].node == "dsedge::SimAM"


def test_float_model_is_not_int8() -> None:
    assert _rules(check_qdq_rules(small_model())) == {"has-qdq"}
    assert check_qdq_rules(small_model(), require_qdq=False) == []
