"""TensorRT calibration table (`calibration.cache`) from our activation ranges, for implicit INT8.

Only for users still on TensorRT 10's deprecated implicit calibration (JetPack
6.1/6.2 ship 10.3; 6.0 ships 8.6, which dsedge does not target) who build from the FP32 `model.onnx` with `BuilderFlag.INT8` and a
calibrator that reads this table: `trtexec --int8 --calib=calibration.cache`,
whose calibrator is `IInt8EntropyCalibrator2`. TensorRT 11 removed implicit
calibration, so no TensorRT 11 reads this file; `model.int8.onnx` (explicit
Q/DQ) is the path that works on both.

Format (text, one tensor per line), as written by TensorRT's own calibrators::

    TRT-100300-EntropyCalibration2
    input: 3c8b4396
    /layer1/conv1/Conv_output_0: 3d1a2b3c

The header carries `NV_TENSORRT_VERSION` (major*10000 + minor*100 + patch since
TensorRT 10) and the calibrator's algorithm. A TensorRT calibrator uses a table
only when the header names its own algorithm (and, as NVIDIA warns, tables are
not guaranteed portable across releases), so we always write the header of the
entropy calibrator trtexec uses, for the TensorRT the user targets (default:
the installed 10.x, else JetPack 6.1/6.2's 10.3.0); the ranges themselves come from
whichever of our methods (entropy, percentile, minmax) calibrated. Each value is
the IEEE-754 bit pattern of the float32 per-tensor scale `amax / 127` in hex.
Tensor names are the ONNX tensor names, which TensorRT's ONNX parser keeps.
Tensors inside the SimAM function get no entry (the parser names them itself);
TensorRT leaves such tensors in higher precision. Torch-free.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from dsedge.errors import DsedgeError
from dsedge.utils.io import atomic_write_text

#: JetPack 6.1/6.2's TensorRT (10.3.0): the target when no TensorRT 10 is installed here.
DEFAULT_TRT_VERSION = "10.3.0"
#: The algorithm of trtexec's calibrator (IInt8EntropyCalibrator2), the one that reads our table.
CALIBRATOR_ALGORITHM = "EntropyCalibration2"


def installed_trt_version() -> str | None:
    """`tensorrt.__version__` if TensorRT imports here, else None (never raises)."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except (ImportError, OSError):
        return None
    return str(getattr(trt, "__version__", "")) or None


def target_trt_version(version: str | None = None) -> str:
    """The TensorRT whose header the table gets: `version`, else the installed 10.x, else 10.3.0.

    An explicit TensorRT other than 10.x is refused: 11.x has no implicit
    calibration and 8.x encodes its version differently. An installed 11.x
    is not a target for this file, so the default falls back to 10.3.0.
    """
    if version is None:
        installed = installed_trt_version()
        return installed if installed and installed.split(".")[0] == "10" else DEFAULT_TRT_VERSION
    major = str(version).split(".")[0]
    if major != "10":
        raise DsedgeError(
            f"no TensorRT {version} reads calibration.cache: only TensorRT 10.x has implicit INT8 calibration",
            "target a TensorRT 10 release (JetPack 6.1/6.2: 10.3.0), or build from model.int8.onnx (explicit Q/DQ)",
        )
    return str(version)


def trt_version_int(version: str) -> int:
    """'10.3.0' -> 100300 (TensorRT 10's NV_TENSORRT_VERSION)."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


def table_header(trt_version: str | None = None) -> str:
    """`TRT-<NV_TENSORRT_VERSION>-EntropyCalibration2` for the targeted TensorRT."""
    return f"TRT-{trt_version_int(target_trt_version(trt_version))}-{CALIBRATOR_ALGORITHM}"


def scale_hex(scale: float) -> str:
    """The float32 bit pattern of `scale` as lower-case hex, as TensorRT writes it."""
    (bits,) = struct.unpack("<I", struct.pack("<f", float(scale)))
    return f"{bits:08x}"


def hex_scale(text: str) -> float:
    """Inverse of `scale_hex`."""
    (value,) = struct.unpack("<f", struct.pack("<I", int(text, 16)))
    return value


def calibration_table(
    ranges: dict[str, tuple[float, float]], method: str = "entropy", trt_version: str | None = None
) -> str:
    """The table's text from {tensor: (min, max)}: symmetric per-tensor scale = max(|min|, |max|) / 127.

    `method` is how the ranges were found (recorded by the caller); it does not
    change the header, which always names trtexec's entropy calibrator.
    """
    lines = [table_header(trt_version)]
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
    trt_version: str | None = None,
) -> Path:
    """Write the table atomically for the targeted TensorRT (see `target_trt_version`); returns its path."""
    atomic_write_text(path, calibration_table(ranges, method, trt_version))
    return Path(path)
