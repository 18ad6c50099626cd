"""The FP16 artifact: float16 weights and activations, float32 inputs/outputs, SimAM kept in float32.

Uses onnxconverter-common's `convert_float_to_float16` with `keep_io_types=True`
(so every runtime feeds the same float32 tensors as for `model.onnx`). The
`dsedge::SimAM` op is on the block list: the converter leaves its call in
float32 and inserts Casts around it, so SimAM's mean/variance reduction and its
`v + lambda` (lambda = 1e-4 is below float16's resolution near 1) run in
float32 — DESIGN §2's numerics note. The function body uses `CastLike`, so it
stays valid whatever dtype reaches it.
"""

from __future__ import annotations

import warnings

import onnx

from dsedge.errors import ExportError
from dsedge.export.onnx import add_probs_output, check_onnx, remove_probs_output
from dsedge.export.simam_function import FUNCTION_NAME


def convert_fp16(model: onnx.ModelProto, keep_simam_fp32: bool = True) -> onnx.ModelProto:
    """A float16 copy of `model` (the input is not modified), validated with the full checker."""
    try:
        from onnxconverter_common import float16
    except ImportError as e:  # a declared dependency, but say so clearly if it is missing
        from dsedge.errors import MissingDependencyError

        raise MissingDependencyError("onnxconverter-common", purpose="FP16 export") from e

    source = onnx.ModelProto()
    source.CopyFrom(model)
    had_probs = remove_probs_output(source)
    block = list(float16.DEFAULT_OP_BLOCK_LIST)
    if keep_simam_fp32:
        block.append(FUNCTION_NAME)
    try:
        with warnings.catch_warnings():
            # one "will be truncated" warning per tiny weight; the parity check measures the effect
            warnings.simplefilter("ignore", UserWarning)
            converted = float16.convert_float_to_float16(
                source, keep_io_types=True, op_block_list=block, disable_shape_infer=False
            )
    except Exception as e:  # converter errors are plain ValueError/KeyError; wrap them
        raise ExportError(f"FP16 conversion failed: {type(e).__name__}: {e}") from e
    if had_probs:
        add_probs_output(converted)  # softmax on the float32 logits
    check_onnx(converted)
    return converted


def count_fp16_initializers(model: onnx.ModelProto) -> tuple[int, int]:
    """(float16, float32) initializer counts — a quick view of what was converted."""
    f16 = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    f32 = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    return f16, f32
