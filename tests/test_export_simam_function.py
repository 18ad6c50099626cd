"""The `dsedge::SimAM` local function: its body matches torch's SimAM, and outlining is exact and strict.

Uses a tiny conv/SimAM network (exports in seconds); the full DS-ResNet50 graph
(32 calls) is covered in test_export_onnx.py.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from dsedge.errors import ExportError
from dsedge.export.onnx import export_onnx, simam_lambdas
from dsedge.export.simam_function import (
    DOMAIN,
    FUNCTION_NAME,
    count_simam_calls,
    inline_simam,
    make_simam_function,
    outline_simam,
)
from dsedge.models.simam import SimAM, simam


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _single_call_model(lam: float, elem: int = TensorProto.FLOAT, opset: int = 18) -> onnx.ModelProto:
    """One `dsedge::SimAM` call on an input of fully symbolic shape."""
    node = helper.make_node(FUNCTION_NAME, ["x"], ["y"], domain=DOMAIN, **{"lambda": lam})
    graph = helper.make_graph(
        [node], "one_simam",
        [helper.make_tensor_value_info("x", elem, ["N", "C", "H", "W"])],
        [helper.make_tensor_value_info("y", elem, ["N", "C", "H", "W"])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
        functions=[make_simam_function(opset)],
    )
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 4, 1, 1), (3, 2, 1, 6), (1, 8, 16, 16)])
@pytest.mark.parametrize("lam", [1e-4, 0.1])
def test_function_body_matches_torch_simam(shape: tuple[int, ...], lam: float) -> None:
    # n comes from Shape at run time (one model, many sizes) and is clamped to >= 1 for 1x1 maps
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 3
    out = _run(_single_call_model(lam), x.numpy())
    np.testing.assert_allclose(out, simam(x, lam).numpy(), atol=1e-5, rtol=1e-5)


def test_function_body_is_valid_for_float16_inputs() -> None:
    # CastLike keeps the body type-correct when the converter feeds it float16
    model = _single_call_model(1e-4, TensorProto.FLOAT16)
    x = (torch.randn(2, 3, 6, 6) * 2).half()
    out = _run(model, x.numpy())
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), simam(x.float(), 1e-4).numpy(), atol=2e-2)


@pytest.mark.parametrize("opset", [15, 17, 21])
def test_function_body_for_other_opsets(opset: int) -> None:
    # before opset 18 ReduceMean takes its axes as an attribute
    x = torch.randn(2, 3, 5, 4)
    out = _run(_single_call_model(1e-4, opset=opset), x.numpy())
    np.testing.assert_allclose(out, simam(x, 1e-4).numpy(), atol=1e-5)


def test_function_needs_castlike_opset() -> None:
    with pytest.raises(ExportError, match="opset >= 15"):
        make_simam_function(14)


def test_lambda_attribute_changes_the_result() -> None:
    x = torch.randn(1, 2, 4, 4).numpy()
    assert not np.allclose(_run(_single_call_model(1e-4), x), _run(_single_call_model(10.0), x))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.att1 = SimAM(0.1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.att2 = SimAM(1e-4)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.att1(torch.relu(self.bn1(self.conv1(x))))
        y = self.att2(self.conv2(y))
        return self.head(y.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny_export():
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():  # non-trivial BN statistics, so folding is actually exercised
        model.bn1.running_mean.uniform_(-1, 1)
        model.bn1.running_var.uniform_(0.5, 2)
    return model, export_onnx(model, 16)


def test_tiny_model_outlines_each_simam_with_its_lambda(tiny_export) -> None:
    model, result = tiny_export
    calls = [n for n in result.model.graph.node if n.domain == DOMAIN]
    assert [n.op_type for n in calls] == [FUNCTION_NAME, FUNCTION_NAME]
    lams = {n.name: helper.get_attribute_value(n.attribute[0]) for n in calls}
    assert lams == pytest.approx({"/att1/SimAM": 0.1, "/att2/SimAM": 1e-4})
    assert [(f.domain, f.name) for f in result.model.functions] == [(DOMAIN, FUNCTION_NAME)]
    assert result.outline.calls == 2 and result.outline.nodes_after < result.outline.nodes_before
    # no leftover SimAM arithmetic in the main graph
    assert not {"Sigmoid", "ReduceSum", "Pow"} & {n.op_type for n in result.model.graph.node}
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(_run(result.model, x.numpy()), ref, atol=1e-5)


def test_inline_simam_gives_flat_model_with_same_outputs(tiny_export) -> None:
    _, result = tiny_export
    flat = inline_simam(result.model)
    onnx.checker.check_model(flat, full_check=True)
    assert count_simam_calls(flat) == 0
    assert all(n.domain in ("", "ai.onnx") for n in flat.graph.node)
    assert DOMAIN not in {imp.domain for imp in flat.opset_import}
    assert len(flat.functions) == 0
    x = torch.randn(2, 3, 16, 16).numpy()
    np.testing.assert_allclose(_run(flat, x), _run(result.model, x), atol=1e-6)
    assert count_simam_calls(result.model) == 2  # the source model is left alone


def _plain_export(model: nn.Module) -> onnx.ModelProto:
    prog = torch.onnx.export(model, (torch.zeros(2, 3, 16, 16),), dynamo=True, verbose=False)
    return prog.model_proto


@pytest.fixture(scope="module")
def plain_bytes(tiny_export) -> bytes:
    """The tiny model exported without outlining (serialized, so each test gets a fresh copy)."""
    return _plain_export(tiny_export[0]).SerializeToString()


def test_outline_refuses_when_a_simam_module_is_not_found(tiny_export, plain_bytes) -> None:
    model, _ = tiny_export
    proto = onnx.load_from_string(plain_bytes)
    lams = simam_lambdas(model) | {"layer9.simam": 1e-4}
    with pytest.raises(ExportError, match="missing"):
        outline_simam(proto, lams)


def test_outline_refuses_without_scope_metadata(tiny_export, plain_bytes) -> None:
    model, _ = tiny_export
    proto = onnx.load_from_string(plain_bytes)
    for node in proto.graph.node:
        del node.metadata_props[:]
    with pytest.raises(ExportError):
        outline_simam(proto, simam_lambdas(model))


def test_outline_is_a_noop_without_simam() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten()).eval()
    proto = _plain_export(model)
    before = proto.SerializeToString()
    report = outline_simam(proto, simam_lambdas(model))
    assert report.calls == 0 and proto.SerializeToString() == before
