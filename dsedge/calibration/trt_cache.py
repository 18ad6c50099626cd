"""TensorRT calibration table (`calibration.cache`) from our activation ranges, for implicit INT8.

Only for users still on TensorRT 10's deprecated implicit calibration (JetPack 6
ships 10.3) who build from the FP32 `model.onnx` with `BuilderFlag.INT8` and a
calibrator that reads this table (e.g. `trtexec --int8 --calib=calibration.cache`).
TensorRT 11 removed implicit calibration; `model.int8.onnx` (explicit Q/DQ) is
the path that works on both.

Format (text, one tensor per line), as written by TensorRT's own calibrators::

    TRT-100300-EntropyCalibration2
    input: 3c8b4396
    /layer1/conv1/Conv_output_0: 3d1a2b3c

The header carries `NV_TENSORRT_VERSION` (major*10000 + minor*100 + patch since
TensorRT 10) and the algorithm; each value is the IEEE-754 bit pattern of the
float32 per-tensor scale `amax / 127` in hex. Tensor names are the ONNX tensor
names, which TensorRT's ONNX parser keeps. Tensors inside the SimAM function get
no entry (the parser names them itself); TensorRT leaves such tensors in higher
precision. Torch-free.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from dsedge.utils.io import atomic_write_text

#: JetPack 6's TensorRT (10.3.0), the oldest TensorRT with Q/DQ + implicit support we target.
DEFAULT_TRT_VERSION = "10.3.0"
_ALGORITHMS = {"entropy": "EntropyCalibration2", "percentile": "EntropyCalibration2", "minmax": "MinMaxCalibration"}


def trt_version_int(version: str) -> int:
    """'10.3.0' -> 100300 (TensorRT 10's NV_TENSORRT_VERSION)."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


def scale_hex(scale: float) -> str:
    """The float32 bit pattern of `scale` as lower-case hex, as TensorRT writes it."""
    (bits,) = struct.unpack("<I", struct.pack("<f", float(scale)))
    return f"{bits:08x}"


def hex_scale(text: str) -> float:
    """Inverse of `scale_hex`."""
    (value,) = struct.unpack("<f", struct.pack("<I", int(text, 16)))
    return value


def calibration_table(
    ranges: dict[str, tuple[float, float]], method: str = "entropy", trt_version: str = DEFAULT_TRT_VERSION
) -> str:
    """The table's text from {tensor: (min, max)}: symmetric per-tensor scale = max(|min|, |max|) / 127."""
    header = f"TRT-{trt_version_int(trt_version)}-{_ALGORITHMS.get(method, 'EntropyCalibration2')}"
    lines = [header]
    for name in sorted(ranges):
        lo, hi = ranges[name]
        amax = float(max(abs(float(lo)), abs(float(hi))))
        if not np.isfinite(amax):
            continue
        scale = max(amax, 1e-8) / 127.0
        lines.append(f"{name}: {scale_hex(scale)}")
    return "\n".join(lines) + "\n"


def read_calibration_table(path: str | Path) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}) of a calibration table; used by tests and `dsedge doctor`-style checks."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header, scales = lines[0], {}
    for line in lines[1:]:
        if line.strip():
            name, _, value = line.rpartition(":")
            scales[name.strip()] = hex_scale(value.strip())
    return header, scales


def write_calibration_table(
    ranges: dict[str, tuple[float, float]],
    path: str | Path,
    method: str = "entropy",
    trt_version: str = DEFAULT_TRT_VERSION,
) -> Path:
    """Write the table atomically; returns its path."""
    atomic_write_text(path, calibration_table(ranges, method, trt_version))
    return Path(path)
