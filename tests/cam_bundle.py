"""Tiny bundles with a `cam` output and a Q/DQ INT8 artifact, for runtime heat-map and OpenVINO tests.

The tiny model's head is GlobalAveragePool -> Flatten -> Gemm on the 3 input channels, so
`dsedge.export.onnx.add_cam_output` turns it into cam = W x + b per pixel (N x 3 x crop x crop).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from tiny_bundle import make_tiny_bundle

from dsedge.bundle import load_bundle


def make_cam_bundle(root: Path, crop: int = 32, int8: bool = False) -> Path:
    from dsedge.export.onnx import CAM_NAME, add_cam_output, check_onnx

    make_tiny_bundle(root, precisions=("fp32",), crop=crop)
    model = onnx.load(str(root / "model.onnx"))
    h, w = add_cam_output(model)
    check_onnx(model)
    onnx.save(model, str(root / "model.onnx"))
    bundle = load_bundle(root, verify=False)
    bundle.add_artifact("model.onnx", "onnx", "fp32", simam="function")
    bundle.manifest["outputs"].append({"name": CAM_NAME, "shape": ["batch", 3, h, w], "dtype": "float32"})
    if int8:
        quantize_int8(root / "model.onnx", root / "model.int8.onnx", crop)
        bundle.add_artifact("model.int8.onnx", "onnx", "int8", simam="function")
    bundle.save()
    return root


def quantize_int8(src: Path, dst: Path, crop: int) -> None:
    """Symmetric S8S8 Q/DQ (the TensorRT form dsedge calibrate writes) on random calibration data."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"input": rng.standard_normal((1, 3, crop, crop)).astype(np.float32)}
                                 for _ in range(8)])

        def get_next(self):  # noqa: ANN202
            return next(self.batches, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
