"""TensorRT's rules for explicit-quantization (Q/DQ) ONNX models, checked on the graph (DESIGN §5).

TensorRT's ONNX parser accepts only symmetric INT8 quantization: every zero
point 0, INT8 (S8S8) activations and weights, per-tensor activation scales and
per-channel weight scales; its DequantizeLinear takes INT8/FP8/INT4/FP4 inputs
only, so ONNX Runtime's default INT32 bias quantization is rejected. We also
require SimAM's internals to stay float: quantizing its mean/variance/sigmoid
chain cost 15-30 points of top-1 agreement in the feasibility run.

`check_qdq_rules` returns every violation (empty list = the model is fine), so
`calibrate_bundle` can refuse to write a model TensorRT would reject or run
badly, and tests can prove the checker catches an asymmetric model. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1}  # input index of the weight


@dataclass(frozen=True)
class Violation:
    """One broken rule: which rule, on which node, and why."""

    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.node}: {self.message}"


def _load(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers plus Constant-node outputs, as arrays."""
    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def _const_dtype(graph: onnx.GraphProto, name: str) -> int | None:
    for t in graph.initializer:
        if t.name == name:
            return t.data_type
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for a in node.attribute:
                if a.name == "value":
                    return a.t.data_type
    return None


def _name(node: onnx.NodeProto) -> str:
    return node.name or f"<{node.op_type} -> {node.output[0] if node.output else '?'}>"


def _check_zero_point(
    g: onnx.GraphProto, consts: dict[str, np.ndarray], node: onnx.NodeProto, name: str
) -> list[Violation]:
    """TensorRT only accepts symmetric INT8: the zero point must be present, INT8 and all zeros.

    An absent zero point is not harmless: QuantizeLinear then defaults its output to UINT8.
    """
    zp_name = node.input[2] if len(node.input) > 2 else ""
    if not zp_name:
        if node.op_type == "QuantizeLinear":
            return [Violation("int8-types", name, "no zero point: output type defaults to UINT8")]
        return []
    out: list[Violation] = []
    zp_type = _const_dtype(g, zp_name)
    if zp_type is not None and zp_type != TensorProto.INT8:
        tname = TensorProto.DataType.Name(zp_type)
        rule = "no-int32-bias" if zp_type == TensorProto.INT32 else "int8-types"
        out.append(Violation(rule, name, f"zero point is {tname}, TensorRT needs INT8"))
    zp = consts.get(zp_name)
    if zp is None:
        out.append(Violation("zero-point-0", name, "zero point is not a constant"))
    elif np.any(zp != 0):
        out.append(Violation("zero-point-0", name, f"zero point {zp.ravel()[:4].tolist()} != 0 (asymmetric)"))
    return out


def _check_scale(scale: np.ndarray | None, name: str) -> list[Violation]:
    """The scale must be a constant TensorRT can fold, and positive and finite to mean anything."""
    if scale is None:
        return [Violation("scale-constant", name, "scale is not a constant")]
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        return [Violation("scale-positive", name, "scale has non-positive or non-finite values")]
    return []


def _check_dequantized_constant(g: onnx.GraphProto, node: onnx.NodeProto, name: str) -> list[Violation]:
    """A DequantizeLinear of a stored tensor (weights, biases) must read INT8.

    TensorRT's DequantizeLinear rejects INT32 inputs, which is what ONNX Runtime's default
    bias quantization writes.
    """
    x_type = _const_dtype(g, node.input[0])
    if x_type == TensorProto.INT32:
        return [Violation("no-int32-bias", name, "dequantizes an INT32 tensor (a quantized bias); keep biases float")]
    if x_type != TensorProto.INT8:
        tname = TensorProto.DataType.Name(x_type) if x_type is not None else "?"
        return [Violation("int8-types", name, f"dequantizes a {tname} tensor, TensorRT needs INT8")]
    return []


def _quantizes_activation(
    node: onnx.NodeProto, consts: dict[str, np.ndarray], producers: dict[str, onnx.NodeProto]
) -> bool:
    """True when `node` quantizes a runtime tensor, not a constant.

    A DequantizeLinear fed by a QuantizeLinear of a constant is a weight pair (the
    unfolded form), so it counts as a weight, not an activation.
    """
    x_name = node.input[0]
    if x_name in consts:
        return False
    producer = producers.get(x_name)
    return not (
        node.op_type == "DequantizeLinear"
        and producer is not None
        and producer.op_type == "QuantizeLinear"
        and producer.input[0] in consts
    )


def _check_qdq_node(
    g: onnx.GraphProto,
    consts: dict[str, np.ndarray],
    producers: dict[str, onnx.NodeProto],
    node: onnx.NodeProto,
) -> list[Violation]:
    """Every rule that one QuantizeLinear/DequantizeLinear node must meet on its own."""
    name = _name(node)
    violations: list[Violation] = []
    if node.domain not in ("", "ai.onnx"):
        violations.append(Violation("standard-qdq", name, f"uses the non-standard domain '{node.domain}'"))
    violations += _check_zero_point(g, consts, node, name)
    scale_name = node.input[1] if len(node.input) > 1 else ""
    scale = consts.get(scale_name)
    violations += _check_scale(scale, name)
    if node.op_type == "DequantizeLinear" and node.input[0] in consts:
        violations += _check_dequantized_constant(g, node, name)
    # activations are quantized per tensor
    if _quantizes_activation(node, consts, producers) and scale is not None and scale.size != 1:
        violations.append(
            Violation("per-tensor-activations", name, f"activation scale has {scale.size} values, TensorRT wants 1")
        )
    return violations


def _check_per_channel_weights(
    g: onnx.GraphProto, consts: dict[str, np.ndarray], producers: dict[str, onnx.NodeProto]
) -> list[Violation]:
    """Every quantized Conv/ConvTranspose weight needs one scale per output channel on the right axis."""
    violations: list[Violation] = []
    for node in g.node:
        idx = _WEIGHT_OPS.get(node.op_type)
        if idx is None or len(node.input) <= idx:
            continue
        dq = producers.get(node.input[idx])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        w = consts.get(dq.input[0])
        scale = consts.get(dq.input[1]) if len(dq.input) > 1 else None
        if w is None or scale is None:
            continue
        out_ch = w.shape[0] if node.op_type == "Conv" else w.shape[1]
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        want_axis = 0 if node.op_type == "Conv" else 1
        if out_ch > 1 and (scale.ndim != 1 or scale.size != out_ch or axis != want_axis):
            violations.append(
                Violation(
                    "per-channel-weights",
                    _name(node),
                    f"weight scale has shape {list(scale.shape)} (axis {axis}); TensorRT wants {out_ch} "
                    f"per-channel scales on axis {want_axis}",
                )
            )
    return violations


def _check_float_functions(m: onnx.ModelProto) -> list[Violation]:
    """No Q/DQ inside model-local functions: SimAM stays float as one fused node."""
    violations: list[Violation] = []
    for fn in m.functions:
        inner = [n for n in fn.node if n.op_type in QDQ_OPS]
        if inner:
            violations.append(
                Violation(
                    "float-functions",
                    f"{fn.domain}::{fn.name}",
                    f"function body holds {len(inner)} Q/DQ node(s); SimAM internals must stay float",
                )
            )
    return violations


def check_qdq_rules(model: onnx.ModelProto | str | Path, require_qdq: bool = True) -> list[Violation]:
    """All TensorRT Q/DQ rule violations of `model` (a path or ModelProto); [] when it is compliant."""
    m = _load(model)
    g = m.graph
    consts = _constants(g)
    producers = {o: n for n in g.node for o in n.output}
    violations: list[Violation] = []
    qdq_nodes = [n for n in g.node if n.op_type in QDQ_OPS]

    if require_qdq and not qdq_nodes:
        violations.append(Violation("has-qdq", "<graph>", "no QuantizeLinear/DequantizeLinear nodes: not an INT8 model"))
    for node in qdq_nodes:
        violations += _check_qdq_node(g, consts, producers, node)
    violations += _check_per_channel_weights(g, consts, producers)
    violations += _check_float_functions(m)
    return violations


def format_violations(violations: list[Violation], limit: int = 10) -> str:
    """A short, readable summary for error messages."""
    lines = [str(v) for v in violations[:limit]]
    if len(violations) > limit:
        lines.append(f"... and {len(violations) - limit} more")
    return "\n".join(lines)
