"""The one artifact table: which file holds which precision, what kind it is, which backends run it.

Export and calibration write these names, engines and the runtime read them,
Triton serves them and the bench labels its rows with them; before this table
each kept its own copy of "fp16 -> model.fp16.onnx" (issue 24). Adding a
precision is one `ArtifactSpec` line here plus the writer that makes the file
(DESIGN §9). Torch-free, no imports beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Manifest `kind`s an artifact entry may carry.
KINDS = ("onnx", "tensorrt", "calibration-cache", "onnx-inline", "report", "model-card")


@dataclass(frozen=True)
class ArtifactSpec:
    """One bundle file: its manifest precision, its canonical name, its kind, the backends that run it."""

    precision: str
    filename: str
    kind: str
    backends: tuple[str, ...]
    made_by: str
    what: str = ""


#: The ONNX models a bundle can hold, in the order a reader should prefer them.
ONNX_ARTIFACTS: tuple[ArtifactSpec, ...] = (
    ArtifactSpec("fp32", "model.onnx", "onnx", ("onnxruntime", "openvino", "tensorrt"), "export",
                 "FP32, dynamic batch; OpenVINO's bf16 runs it too"),
    ArtifactSpec("fp16", "model.fp16.onnx", "onnx", ("onnxruntime", "tensorrt"), "export",
                 "FP16 weights and activations, FP32 I/O, SimAM in FP32"),
    ArtifactSpec("int8", "model.int8.onnx", "onnx", ("onnxruntime", "openvino", "tensorrt"), "calibrate",
                 "explicit Q/DQ in TensorRT's form"),
    ArtifactSpec("int8-fp16", "model.int8-fp16.onnx", "onnx", ("tensorrt",), "calibrate",
                 "the INT8 Q/DQ with float layers in FP16, for strongly typed TensorRT"),
)
#: The FP32 model with its SimAM functions inlined, for OpenVINO's ONNX frontend (export --inline).
INLINE_FP32 = ArtifactSpec("fp32", "model.inline.onnx", "onnx-inline", ("openvino",), "export")
#: TensorRT's INT8 calibration table (for builders that calibrate themselves).
CALIBRATION_CACHE = ArtifactSpec("int8", "calibration.cache", "calibration-cache", ("tensorrt",), "calibrate")
#: Manifest precision of the mixed INT8 twin.
MIXED_INT8 = "int8-fp16"
#: Which ONNX precision a backend precision reads when it has no file of its own (OpenVINO bf16).
SOURCE_PRECISION = {"bf16": "fp32"}


def onnx_file(precision: str) -> str:
    """The canonical ONNX file name of `precision` ("fp16" -> "model.fp16.onnx")."""
    for spec in ONNX_ARTIFACTS:
        if spec.precision == SOURCE_PRECISION.get(precision, precision):
            return spec.filename
    raise ValueError(f"no ONNX artifact for precision {precision!r}; known: "
                     + ", ".join(s.precision for s in ONNX_ARTIFACTS))


def onnx_precisions() -> tuple[str, ...]:
    return tuple(s.precision for s in ONNX_ARTIFACTS)


def engine_file(precision: str, gpu_slug: str, version: str) -> str:
    """`model.<precision>.<gpu-slug>.trt<version>.plan`: one engine per precision, GPU model and TensorRT."""
    return f"model.{precision}.{gpu_slug}.trt{version}.plan"


def timing_cache_file(gpu_slug: str, version: str) -> str:
    """TensorRT's timing cache for one GPU model and TensorRT release."""
    return f"timing.{gpu_slug}.trt{version}.cache"


def artifacts_for(backend: str) -> tuple[ArtifactSpec, ...]:
    """The ONNX artifacts `backend` runs, in table order."""
    return tuple(s for s in ONNX_ARTIFACTS if backend in s.backends)
