"""torch -> ONNX: dynamo export, BatchNorm/constant folding, SimAM outlining, optional softmax output.

The graph contract every runtime relies on (recorded in the manifest):
input `input` float32 N x 3 x H x W (normalised, NCHW, dynamic N), output
`logits` float32 N x C, and with `probs=True` a second output `probs`
(softmax over classes). The dynamo exporter's optimizer folds each eval-mode
BatchNorm into the preceding Conv and folds constants; we then outline every
SimAM into one `dsedge::SimAM` call (`dsedge.export.simam_function`) and prove
the result with `onnx.checker` (full check) and strict shape inference.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass

import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from dsedge.errors import ExportError
from dsedge.export.simam_function import OutlineReport, default_opset, outline_simam
from dsedge.models.simam import SimAM

INPUT_NAME = "input"
LOGITS_NAME = "logits"
PROBS_NAME = "probs"
BATCH_DIM = "N"
DEFAULT_OPSET = 18


@dataclass
class ExportResult:
    """The exported model (function form), what outlining did, and the opset it really has."""

    model: onnx.ModelProto
    outline: OutlineReport
    image_size: int
    opset: int
    probs: bool


def simam_lambdas(model: nn.Module) -> dict[str, float]:
    """SimAM module name -> lambda, for every SimAM in `model` (empty for the baselines)."""
    return {name: float(m.lam) for name, m in model.named_modules() if isinstance(m, SimAM)}


def export_onnx(
    model: nn.Module,
    image_size: int,
    *,
    opset: int = DEFAULT_OPSET,
    probs: bool = False,
) -> ExportResult:
    """Export an eval-mode classifier to a checked ONNX model with SimAM as local functions.

    The example input has batch 2 so the exporter keeps the batch dimension
    symbolic (it specialises sizes 0 and 1).
    """
    if image_size < 8:
        raise ExportError(f"image size {image_size} is too small to export (need >= 8)")
    model = model.eval()
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim(BATCH_DIM, min=1, max=4096)
    log = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), _quiet_loggers():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[LOGITS_NAME],
                dynamic_shapes=({0: batch},),
                optimize=True,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; report them as one user-facing error
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"torch.onnx.export failed for {type(model).__name__} at {image_size}px: {first}",
            "set DSEDGE_DEBUG=1 for the traceback",
        ) from e
    proto = program.model_proto
    _rename_batch_dim(proto)
    bn = [n.name for n in proto.graph.node if n.op_type == "BatchNormalization"]
    if bn:
        raise ExportError(f"BatchNorm was not folded into the convolutions ({len(bn)} left, e.g. {bn[0]})")
    report = outline_simam(proto, simam_lambdas(model))
    if probs:
        add_probs_output(proto)
    check_onnx(proto)
    return ExportResult(model=proto, outline=report, image_size=image_size,
                        opset=default_opset(proto), probs=probs)


@contextlib.contextmanager
def _quiet_loggers():
    """The exporter logs progress lines at INFO/WARNING; keep the CLI output clean."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    saved = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _rename_batch_dim(model: onnx.ModelProto) -> None:
    """Name the dynamic batch dimension `N` on the graph inputs and outputs."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def has_probs_output(model: onnx.ModelProto) -> bool:
    return any(o.name == PROBS_NAME for o in model.graph.output)


def add_probs_output(model: onnx.ModelProto) -> None:
    """Append `probs = Softmax(logits, axis=1)` (float32) as a second graph output, in place."""
    graph = model.graph
    if has_probs_output(model):
        return
    logits = next(o for o in graph.output if o.name == LOGITS_NAME)
    num_classes = logits.type.tensor_type.shape.dim[1].dim_value
    graph.node.append(helper.make_node("Softmax", [LOGITS_NAME], [PROBS_NAME], name="/probs/Softmax", axis=1))
    graph.output.append(
        helper.make_tensor_value_info(PROBS_NAME, TensorProto.FLOAT, [BATCH_DIM, num_classes or None])
    )


def remove_probs_output(model: onnx.ModelProto) -> bool:
    """Drop the `probs` output and its Softmax (in place); True if there was one.

    The FP16 converter mishandles a float32 graph output (`logits`) that also
    feeds another node, so FP16 conversion strips the softmax, converts, and
    re-adds it on the float32 logits.
    """
    if not has_probs_output(model):
        return False
    graph = model.graph
    for node in [n for n in graph.node if PROBS_NAME in n.output]:
        graph.node.remove(node)
    for out in [o for o in graph.output if o.name == PROBS_NAME]:
        graph.output.remove(out)
    return True


def check_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """Full `onnx.checker` pass and strict shape inference (with type checks); `ExportError` if not."""
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"the exported ONNX model does not validate: {str(e).splitlines()[0]}") from e


def save_onnx(model: onnx.ModelProto, path) -> None:
    """Write a model atomically (a single file; DS-ResNet50 is far below the 2 GB protobuf limit)."""
    from dsedge.utils.io import atomic_path

    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
