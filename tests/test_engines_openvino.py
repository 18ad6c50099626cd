"""OpenVINO runner: SimAM local functions are inlined, FP32 matches a NumPy reference, bf16 gated on CPU flags."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dsedge.engines import openvino_runner as ovr
from dsedge.errors import EngineError, MissingDependencyError

pytest.importorskip("openvino")

LAM = 1e-4
H = W = 8


def _simam_function() -> onnx.FunctionProto:
    """A `dsedge::SimAM` local function (fixed 8x8 maps: n = 63), the shape the exporter emits."""
    c = lambda name, v: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(v, dtype=np.float32), name)
    )
    nodes = [
        helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([2, 3], np.int64), "axes")),
        c("n", H * W - 1), c("four", 4.0), c("lam", LAM), c("half", 0.5),
        helper.make_node("ReduceMean", ["X", "axes"], ["mu"], keepdims=1),
        helper.make_node("Sub", ["X", "mu"], ["xc"]),
        helper.make_node("Mul", ["xc", "xc"], ["d"]),
        helper.make_node("ReduceSum", ["d", "axes"], ["s"], keepdims=1),
        helper.make_node("Div", ["s", "n"], ["v"]),
        helper.make_node("Add", ["v", "lam"], ["vl"]),
        helper.make_node("Mul", ["vl", "four"], ["den"]),
        helper.make_node("Div", ["d", "den"], ["q"]),
        helper.make_node("Add", ["q", "half"], ["e"]),
        helper.make_node("Sigmoid", ["e"], ["g"]),
        helper.make_node("Mul", ["X", "g"], ["Y"]),
    ]
    return helper.make_function("dsedge", "SimAM", ["X"], ["Y"], nodes, [helper.make_opsetid("", 18)])


def _weights() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((3, 3)).astype(np.float32)


def make_model(path: Path) -> Path:
    """input -> dsedge::SimAM -> GlobalAveragePool -> Flatten -> Gemm -> logits (dynamic batch)."""
    graph = helper.make_graph(
        [
            helper.make_node("SimAM", ["input"], ["att"], domain="dsedge"),
            helper.make_node("GlobalAveragePool", ["att"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, H, W])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(_weights(), "w")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("dsedge", 1)],
        functions=[_simam_function()],
    )
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reference(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    d = (x64 - x64.mean(axis=(2, 3), keepdims=True)) ** 2
    v = d.sum(axis=(2, 3), keepdims=True) / (H * W - 1)
    y = x64 / (1 + np.exp(-(d / (4 * (v + LAM)) + 0.5)))
    return y.mean(axis=(2, 3)) @ _weights().astype(np.float64)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("ov") / "model.onnx")


def test_inline_removes_the_function(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "inline.onnx"
    assert ovr.inline_onnx(tiny_onnx, out) is True
    m = onnx.load(str(out))
    assert len(m.functions) == 0
    assert all(n.domain in ("", "ai.onnx") for n in m.graph.node)
    assert any(n.op_type == "Sigmoid" for n in m.graph.node)
    assert ovr.inline_onnx(out, tmp_path / "again.onnx") is False  # nothing left to inline


def test_fp32_matches_numpy_reference_at_two_batch_sizes(tiny_onnx: Path) -> None:
    rng = np.random.default_rng(0)
    with ovr.OpenVinoRunner(tiny_onnx, "fp32", threads=1) as runner:
        assert runner.info.backend == "openvino" and runner.info.precision == "fp32"
        assert runner.info.extra["inference_precision"] == "f32"
        for n in (1, 3):
            x = rng.standard_normal((n, 3, H, W)).astype(np.float32)
            y = runner.infer(x)
            assert y.dtype == np.float32 and y.shape == (n, 3)
            np.testing.assert_allclose(y, reference(x), atol=1e-4, rtol=1e-4)


def test_bf16_only_with_native_support(tiny_onnx: Path) -> None:
    x = np.random.default_rng(2).standard_normal((2, 3, H, W)).astype(np.float32)
    if ovr.native_bf16():
        with ovr.OpenVinoRunner(tiny_onnx, "bf16") as runner:
            y = runner.infer(x)
        assert runner.info.extra["inference_precision"] == "bf16"
        np.testing.assert_allclose(y, reference(x), atol=5e-2, rtol=5e-2)
    else:
        with pytest.raises(EngineError, match="bf16"):
            ovr.OpenVinoRunner(tiny_onnx, "bf16")




def test_bad_inputs(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="not supported"):
        ovr.OpenVinoRunner(tiny_onnx, "fp16")
    with pytest.raises(EngineError, match="not found"):
        ovr.OpenVinoRunner(tmp_path / "nope.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(EngineError):
        ovr.OpenVinoRunner(broken)


def test_missing_openvino_is_a_clear_error(tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingDependencyError) as err:
        ovr.OpenVinoRunner(tiny_onnx)
    assert "dsedge[openvino]" in (err.value.hint or "")


def test_static_shapes_compile_per_batch_and_match_dynamic(tiny_onnx: Path) -> None:
    """One static-shape model per batch size (bounded cache), same outputs as the dynamic model."""
    rng = np.random.default_rng(3)
    with ovr.OpenVinoRunner(tiny_onnx, "fp32", threads=1) as static, \
            ovr.OpenVinoRunner(tiny_onnx, "fp32", threads=1, static_shapes=False) as dynamic:
        assert static.info.extra["static_shapes"] is True
        assert dynamic.info.extra["static_shapes"] is False
        for n in (1, 2, 1, 3, 4, 5, 2):
            x = rng.standard_normal((n, 3, H, W)).astype(np.float32)
            np.testing.assert_allclose(static.infer(x), dynamic.infer(x), atol=1e-5, rtol=1e-5)
        assert len(static._requests) == ovr.MAX_STATIC_SHAPES
        assert (1, 3, H, W) not in static._requests  # least recently used, dropped
        assert list(static._requests)[-1] == (2, 3, H, W)


SCALE_X, SCALE_W = 0.02, 0.01


def make_qdq_model(path: Path) -> Path:
    """TensorRT-form Q/DQ: input -> Q -> DQ -> 1x1 Conv (int8 weights -> DQ) -> GlobalAveragePool -> Flatten."""
    w_int8 = np.random.default_rng(4).integers(-100, 100, size=(3, 3, 1, 1)).astype(np.int8)
    init = [numpy_helper.from_array(np.array(SCALE_X, np.float32), "sx"),
            numpy_helper.from_array(np.array(0, np.int8), "zx"),
            numpy_helper.from_array(w_int8, "wq"),
            numpy_helper.from_array(np.array(SCALE_W, np.float32), "sw"),
            numpy_helper.from_array(np.array(0, np.int8), "zw")]
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["input", "sx", "zx"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"]),
            helper.make_node("Conv", ["xd", "wd"], ["conv"]),
            helper.make_node("GlobalAveragePool", ["conv"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["logits"]),
        ],
        "tiny_qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, H, W])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def qdq_reference(x: np.ndarray, path: Path) -> np.ndarray:
    """The Q/DQ model's maths in NumPy: fake-quantised input, int8 weights times their scale."""
    wq = numpy_helper.to_array(next(i for i in onnx.load(str(path)).graph.initializer if i.name == "wq"))
    xq = np.clip(np.round(x / SCALE_X), -128, 127) * SCALE_X
    return xq.mean(axis=(2, 3)) @ (wq.reshape(3, 3).astype(np.float64) * SCALE_W).T


def test_int8_runs_the_qdq_file(tmp_path: Path) -> None:
    """INT8 is the Q/DQ file itself; the float parts stay f32 (not bf16, even on bf16 CPUs)."""
    path = make_qdq_model(tmp_path / "model.int8.onnx")
    x = np.random.default_rng(5).standard_normal((2, 3, H, W)).astype(np.float32)
    with ovr.OpenVinoRunner(path, "int8", threads=1) as runner:
        y = runner.infer(x)
        assert runner.info.precision == "int8" and runner.info.extra["inference_precision"] == "f32"
        outputs = runner.infer_all(x)
    np.testing.assert_allclose(y, qdq_reference(x, path), atol=2e-3, rtol=1e-2)
    assert list(outputs) == ["logits"] and np.array_equal(outputs["logits"], y)


def test_from_bundle_picks_the_file_for_each_precision(tiny_onnx: Path, tmp_path: Path) -> None:
    import shutil

    from tiny_bundle import make_tiny_bundle

    from dsedge.bundle import load_bundle

    root = make_tiny_bundle(tmp_path / "bundle", precisions=("fp32",), crop=H)
    shutil.copy(tiny_onnx, root / "model.onnx")  # the SimAM-function model: inlined on load
    make_qdq_model(root / "model.int8.onnx")
    bundle = load_bundle(root, verify=False)
    bundle.manifest["artifacts"].clear()
    bundle.add_artifact("model.onnx", "onnx", "fp32")
    bundle.add_artifact("model.int8.onnx", "onnx", "int8")
    bundle.save()
    x = np.random.default_rng(6).standard_normal((1, 3, H, W)).astype(np.float32)
    with ovr.OpenVinoRunner.from_bundle(root, "fp32", threads=1, interleaved=True) as fp32:
        assert fp32.info.extra["file"] == "model.onnx" and fp32.info.extra["inlined_simam"] is True
        np.testing.assert_allclose(fp32.infer(x), reference(x), atol=1e-4, rtol=1e-4)
    with ovr.OpenVinoRunner.from_bundle(load_bundle(root), "int8") as int8:
        assert int8.info.extra["file"] == "model.int8.onnx"
        np.testing.assert_allclose(int8.infer(x), qdq_reference(x, root / "model.int8.onnx"), atol=2e-3, rtol=1e-2)
