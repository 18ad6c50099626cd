"""Quantize other weights than the bundle's: the INT8 file of a QAT checkpoint, judged against the bundle's FP32.

Quantization-aware fine-tuning (`dsedge qat`) moves the float weights so that their *INT8* forward
matches the original model's softmax; the fine-tuned weights in float drift away from the original
(at 224 px they flipped 5 to 80 of 600 val views, by settings; benchmarks/RESULTS.md). So the
QAT checkpoint is not a new FP32 model to ship: it is the recipe for the bundle's INT8 file.
`dsedge calibrate BUNDLE --weights QAT` exports it exactly as the bundle's `model.onnx` was
exported (same opset, input size, outputs), puts its parameters into a copy of `model.onnx`
(node by node, shapes checked), and hands that to calibrate as the file to quantize. The
activation ranges still come from the bundle's `model.onnx` (the ranges QAT trained with,
`dsedge qat --bundle`), and every agreement, AUC and referral is measured against the bundle's
FP32 model, as for any INT8 file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from dsedge.bundle import Bundle
from dsedge.errors import CalibrationError


def _read_source(checkpoint: str | Path, bundle: Bundle) -> tuple[Any, dict[str, Any]]:
    """(model, meta) of `checkpoint`, refused unless it is the bundle's architecture, classes and preprocessing."""
    from dsedge.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint, expect_model=bundle.manifest["model"]["name"])
    if list(meta.get("classes") or []) != list(bundle.classes):
        raise CalibrationError(f"--weights {checkpoint} predicts {meta.get('classes')}, the bundle {bundle.classes}",
                               "pass the QAT checkpoint made from this bundle's model (`dsedge qat ... --bundle`)")
    pre = dict(meta.get("preprocessing") or {})
    if pre and pre != dict(bundle.preprocessing):
        raise CalibrationError(f"--weights {checkpoint} was trained with other preprocessing than the bundle's",
                               f"checkpoint: {pre}; bundle: {dict(bundle.preprocessing)}")
    return model, meta


def with_weights_of(reference: onnx.ModelProto, exported: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `reference` whose initializers hold `exported`'s values, matched node by node.

    The exporter numbers its node and tensor names with a process-wide counter, so two exports
    of one architecture differ in names; the ranges and the Q/DQ search address tensors and nodes
    by the bundle's names. Both graphs must have the same op types in the same order and the same
    initializer shapes at the same node inputs; raises `CalibrationError` otherwise.
    """
    from onnx import numpy_helper

    ra, ea = reference.graph.node, exported.graph.node
    if [n.op_type for n in ra] != [n.op_type for n in ea]:
        raise CalibrationError(f"--weights exports to another graph ({len(ea)} nodes against the bundle's {len(ra)}, "
                               "or other operators)", "pass a checkpoint of the bundle's model (`dsedge qat --bundle`)")
    theirs = {t.name: t for t in exported.graph.initializer}
    ours = {t.name: t for t in reference.graph.initializer}
    values: dict[str, onnx.TensorProto] = {}
    for r, e in zip(ra, ea, strict=True):
        for rn, en in zip(r.input, e.input, strict=False):
            if rn not in ours:
                continue
            src = theirs.get(en)
            if src is None or tuple(src.dims) != tuple(ours[rn].dims) or values.get(rn, src).name != src.name:
                raise CalibrationError(f"--weights does not match the bundle's parameter {rn} (node {r.name})")
            values[rn] = src
    out = onnx.ModelProto()
    out.CopyFrom(reference)
    del out.graph.initializer[:]
    for t in reference.graph.initializer:
        new = numpy_helper.from_array(numpy_helper.to_array(values[t.name]), t.name) if t.name in values else t
        out.graph.initializer.append(new)
    return out


def weights_source(bundle: Bundle, checkpoint: str | Path, out: Path,
                   say: Any = lambda _m: None) -> tuple[Path, dict[str, Any]]:
    """Export `checkpoint` like the bundle's `model.onnx` to `out`; returns (path, manifest record).

    Raises `CalibrationError` when the checkpoint is another model or exports to another graph.
    """
    from dsedge.export.onnx import CAM_NAME, PROBS_NAME, export_onnx
    from dsedge.utils.io import sha256_file

    model, meta = _read_source(checkpoint, bundle)
    fp32 = onnx.load(str(bundle.require("onnx", "fp32")), load_external_data=False)
    outputs = {o["name"] for o in bundle.manifest.get("outputs") or []}
    say(f"exporting {Path(checkpoint).name} like the bundle's model.onnx")
    exported = export_onnx(model, int(bundle.preprocessing["crop"]), opset=int(bundle.manifest["opset"]),
                           probs=PROBS_NAME in outputs, cam=CAM_NAME in outputs).model
    onnx.save(with_weights_of(fp32, exported), str(out))  # the bundle's names and sealed facts, the new values
    from dsedge.models.checkpoint import checkpoint_paths

    weights_file, _ = checkpoint_paths(checkpoint)
    return out, {"checkpoint": weights_file.name, "sha256": sha256_file(weights_file), "qat": meta.get("qat")}
