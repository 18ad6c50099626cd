"""A tiny, torch-free bundle for runtime, TensorRT-contract and Triton tests.

The model is `GlobalAveragePool -> Flatten -> Gemm` (3 channels -> 3 classes)
with a dynamic batch, written with onnx.helper in milliseconds, so tests of
the runtime path never need torch or a real export. Its FP16 twin casts to
float16 inside and keeps FP32 I/O, like the real `model.fp16.onnx`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dsedge.bundle import Bundle, new_manifest
from dsedge.config import PreprocessConfig

CLASSES = ["MEL", "NV", "SK"]
WEIGHT = np.array([[2.0, -1.0, 0.5], [-1.5, 1.0, 0.25], [0.5, 0.5, -2.0]], dtype=np.float32)
BIAS = np.array([0.1, -0.2, 0.05], dtype=np.float32)


def tiny_model(crop: int = 32, fp16: bool = False, input_name: str = "input", output_name: str = "logits") -> onnx.ModelProto:
    """The tiny classifier; `fp16=True` computes in float16 between two Casts (FP32 I/O)."""
    dtype = np.float16 if fp16 else np.float32
    nodes, src = [], input_name
    if fp16:
        nodes.append(helper.make_node("Cast", [input_name], ["x16"], to=TensorProto.FLOAT16))
        src = "x16"
    nodes += [
        helper.make_node("GlobalAveragePool", [src], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["gemm" if fp16 else output_name], transB=1),
    ]
    if fp16:
        nodes.append(helper.make_node("Cast", ["gemm"], [output_name], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, crop, crop])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", len(CLASSES)])],
        initializer=[
            numpy_helper.from_array(WEIGHT.astype(dtype), "W"),
            numpy_helper.from_array(BIAS.astype(dtype), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def reference_logits(batch: np.ndarray) -> np.ndarray:
    """What the tiny model computes, in NumPy: mean over H, W, then x W^T + b."""
    return batch.mean(axis=(2, 3)) @ WEIGHT.T + BIAS


def make_tiny_bundle(
    root: Path,
    precisions: tuple[str, ...] = ("fp32", "fp16"),
    crop: int = 32,
    resize: int | None = None,
) -> Path:
    """Write a bundle folder with the tiny model in the given precisions ("fp32", "fp16")."""
    root.mkdir(parents=True, exist_ok=True)
    pre = PreprocessConfig(resize=resize or round(crop * 256 / 224), crop=crop)
    manifest = new_manifest(
        model={"name": "tiny", "num_classes": len(CLASSES), "simam_lambda": 1e-4},
        classes=CLASSES,
        input_spec={"name": "input", "shape": ["batch", 3, crop, crop], "dtype": "float32"},
        preprocessing=pre.to_dict(),
    )
    manifest["outputs"] = [{"name": "logits", "shape": ["batch", len(CLASSES)], "dtype": "float32"}]
    bundle = Bundle(root=root, manifest=manifest)
    files = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}
    for p in precisions:
        onnx.save(tiny_model(crop, fp16=(p == "fp16")), str(root / files[p]))
        bundle.add_artifact(files[p], "onnx", p, simam="function")
    bundle.save()
    return root
