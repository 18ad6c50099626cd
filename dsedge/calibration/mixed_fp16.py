"""Mixed INT8/FP16 for TensorRT's strong typing: `model.int8-fp16.onnx`.

Under strong typing (every network on TensorRT 11; `--strongly-typed` on 10)
a layer runs in the type its ONNX tensors have. A Q/DQ model derived from the
FP32 graph therefore runs every layer that is not quantized — SimAM, kept-float
groups such as the depthwise convs, the residual adds after their
DequantizeLinear — in FP32 (DESIGN §5). This module derives a twin in which
those layers are FP16:

* the opset is raised to 19, the first where DequantizeLinear/QuantizeLinear
  accept float16 scales (the ops in this graph mean the same in 18 and 19);
* onnxconverter-common turns every float tensor, scale and bias into float16,
  with float32 graph inputs/outputs (`keep_io_types`) — so a DequantizeLinear
  outputs FP16 and the non-quantized layers after it run FP16;
* `dsedge::SimAM` is on the block list: its call gets Casts to and from float32,
  so its mean/variance reductions and `v + lambda` run in FP32 (lambda = 1e-4
  is below float16's resolution near 1), as in `model.fp16.onnx`.

`float_precision_report` proves the result's types from ONNX shape inference;
the tests assert it. ONNX Runtime CPU runs the file too (it computes FP16 nodes
in FP32), which is how agreement is checked without a GPU.
"""

from __future__ import annotations

import warnings
from typing import Any

import onnx
from onnx import TensorProto

from dsedge.bundle import MIXED_INT8, onnx_file
from dsedge.calibration.rules import QDQ_OPS
from dsedge.export.simam_function import FUNCTION_NAME

MIXED_PRECISION = MIXED_INT8
MIXED_NAME = onnx_file(MIXED_PRECISION)
QDQ_FP16_OPSET = 19
#: Ops whose float outputs are bookkeeping, not arithmetic TensorRT would run in some precision.
_NON_COMPUTE = {"Cast", "Shape", "Constant", "Reshape", "Flatten", "Identity", *QDQ_OPS}


def _raise_opset(model: onnx.ModelProto, version: int) -> None:
    for imports in [model.opset_import, *(f.opset_import for f in model.functions)]:
        for o in imports:
            if o.domain in ("", "ai.onnx") and o.version < version:
                o.version = version


def to_mixed_fp16(qdq_model: onnx.ModelProto) -> onnx.ModelProto:
    """The FP16-float twin of a Q/DQ model (the input is not modified); checker-validated."""
    from onnxconverter_common import float16

    source = onnx.ModelProto()
    source.CopyFrom(qdq_model)
    _raise_opset(source, QDQ_FP16_OPSET)
    block = [*float16.DEFAULT_OP_BLOCK_LIST, FUNCTION_NAME]
    with warnings.catch_warnings():
        # "will be truncated" for tiny values (scales of dead channels): clamped to float16's minimum
        warnings.simplefilter("ignore", UserWarning)
        mixed = float16.convert_float_to_float16(source, keep_io_types=True, op_block_list=block,
                                                 disable_shape_infer=False)
    onnx.checker.check_model(mixed, full_check=True)
    return mixed


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor in the main graph, from strict ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def float_precision_report(model: onnx.ModelProto) -> dict[str, Any]:
    """Which compute nodes produce float16 and which float32 outputs; SimAM calls' I/O types.

    A correct mixed model has `fp32_compute == []`, every SimAM call on float32
    I/O, and float32 graph inputs/outputs.
    """
    types = tensor_types(model)
    fp16, fp32, simam_io = [], [], []
    for node in model.graph.node:
        if node.op_type == FUNCTION_NAME:
            simam_io.append({"node": node.name, "input": types.get(node.input[0]), "output": types.get(node.output[0])})
            continue
        if node.op_type in _NON_COMPUTE:
            continue
        out_types = {types.get(o) for o in node.output}
        if TensorProto.FLOAT in out_types:
            fp32.append(node.name or node.op_type)
        elif TensorProto.FLOAT16 in out_types:
            fp16.append(node.name or node.op_type)
    dq_types = sorted({types.get(n.output[0], 0) for n in model.graph.node if n.op_type == "DequantizeLinear"})
    return {
        "fp16_compute": fp16,
        "fp32_compute": fp32,
        "simam_calls": simam_io,
        "dequantize_output_types": [TensorProto.DataType.Name(t) for t in dq_types],
        "io_types": [TensorProto.DataType.Name(types[v.name]) for v in [*model.graph.input, *model.graph.output]],
    }
