"""torch -> ONNX: dynamo export, BatchNorm/constant folding, SimAM outlining, optional softmax output.

The graph contract every runtime relies on (recorded in the manifest):
input `input` float32 N x 3 x H x W (normalised, NCHW, dynamic N), output
`logits` float32 N x C, and with `probs=True` a second output `probs`
(softmax over classes), with `cam=True` an output `cam` (class activation maps, see
`add_cam_output`). The dynamo exporter's optimizer folds each eval-mode
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

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from dsedge.errors import ExportError
from dsedge.export.simam_function import OutlineReport, default_opset, outline_simam
from dsedge.models.simam import SimAM

INPUT_NAME = "input"
LOGITS_NAME = "logits"
PROBS_NAME = "probs"
CAM_NAME = "cam"
_POOL_OPS = ("ReduceMean", "GlobalAveragePool")
_FLATTEN_OPS = ("Reshape", "Flatten")
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
    cam: bool = False,
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
    if cam:
        add_cam_output(proto)
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


def has_cam_output(model: onnx.ModelProto) -> bool:
    return any(o.name == CAM_NAME for o in model.graph.output)


def add_cam_output(model: onnx.ModelProto) -> tuple[int, int]:
    """Append `cam` = classifier weights applied at every position of the last feature map, in place.

    The head of every dsedge classifier is features -> global average pool (`ReduceMean` over
    H, W or `GlobalAveragePool`) -> flatten -> `Gemm` (fc) -> `logits`. A 1x1 `Conv` with the fc
    weights and bias on the features gives, per class c and position (y, x),
    cam[c, y, x] = w_c . F[:, y, x] + b_c, whose spatial mean is exactly logits[c] (Zhou et al.
    2016's class activation map). It is one small conv in the graph, so every engine returns it
    from the same call as the logits. Returns the map's (h, w) (0 where symbolic).
    """
    graph = model.graph
    if has_cam_output(model):
        raise ExportError("the model already has a `cam` output")
    producers = {o: n for n in graph.node for o in n.output}
    gemm = producers.get(LOGITS_NAME)
    flat = producers.get(gemm.input[0]) if gemm is not None and gemm.op_type == "Gemm" else None
    pool = producers.get(flat.input[0]) if flat is not None and flat.op_type in _FLATTEN_OPS else None
    if pool is None or pool.op_type not in _POOL_OPS:
        raise ExportError("cannot add a `cam` output: the model's head is not global-average-pool -> flatten -> Gemm",
                          "class activation maps need a ResNet-style head (ds_resnet50, resnet50)")
    inits = {t.name: t for t in graph.initializer}
    if gemm.input[1] not in inits or (len(gemm.input) > 2 and gemm.input[2] not in inits):
        raise ExportError("cannot add a `cam` output: the classifier weights are not constants")
    attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    weight = numpy_helper.to_array(inits[gemm.input[1]]).astype(np.float32)
    weight = weight if attrs.get("transB", 0) else weight.T  # classes x features
    weight = weight * float(attrs.get("alpha", 1.0))
    new_inits = [numpy_helper.from_array(weight[:, :, None, None].copy(), "cam.weight")]
    conv_inputs = [pool.input[0], "cam.weight"]
    if len(gemm.input) > 2 and gemm.input[2]:
        bias = numpy_helper.to_array(inits[gemm.input[2]]).astype(np.float32).reshape(-1)
        bias = np.broadcast_to(bias * float(attrs.get("beta", 1.0)), (weight.shape[0],)).copy()
        new_inits.append(numpy_helper.from_array(bias, "cam.bias"))
        conv_inputs.append("cam.bias")
    graph.initializer.extend(new_inits)
    graph.node.append(helper.make_node("Conv", conv_inputs, [CAM_NAME], name="/cam/Conv", kernel_shape=[1, 1]))
    h, w = _spatial_dims(model, pool.input[0])
    graph.output.append(helper.make_tensor_value_info(
        CAM_NAME, TensorProto.FLOAT, [BATCH_DIM, int(weight.shape[0]), h or "cam_h", w or "cam_w"]))
    return h, w


def _spatial_dims(model: onnx.ModelProto, name: str) -> tuple[int, int]:
    """(H, W) of an intermediate tensor from shape inference; 0 where unknown."""
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        if vi.name == name:
            dims = vi.type.tensor_type.shape.dim
            if len(dims) == 4:
                return (dims[2].dim_value if dims[2].HasField("dim_value") else 0,
                        dims[3].dim_value if dims[3].HasField("dim_value") else 0)
    return 0, 0


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
