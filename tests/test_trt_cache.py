"""calibration.cache: the header names the TensorRT the user targets and trtexec's entropy calibrator."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from dsedge.calibration.trt_cache import (
    hex_scale,
    read_calibration_table,
    scale_hex,
    target_trt_version,
    write_calibration_table,
)
from dsedge.errors import DsedgeError

RANGES = {"input": (-2.1, 2.6), "/layer1/conv1/Conv_output_0": (0.0, 12.7), "nan_tensor": (float("nan"), float("nan"))}


def _fake_trt(monkeypatch, version: str | None) -> None:
    if version is None:
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    else:
        monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))


def test_header_follows_the_installed_tensorrt_10(monkeypatch, tmp_path: Path) -> None:
    _fake_trt(monkeypatch, "10.13.3.9")
    path = write_calibration_table(RANGES, tmp_path / "calibration.cache", method="minmax")
    header, scales = read_calibration_table(path)
    # NV_TENSORRT_VERSION 10.13.3 = 101303; always the entropy calibrator trtexec --calib uses
    assert header == "TRT-101303-EntropyCalibration2"
    assert scales["/layer1/conv1/Conv_output_0"] == pytest.approx(12.7 / 127, rel=1e-6)
    assert scales["input"] == pytest.approx(2.6 / 127, rel=1e-6) and "nan_tensor" not in scales


def test_explicit_target_and_defaults(monkeypatch, tmp_path: Path) -> None:
    _fake_trt(monkeypatch, None)
    assert target_trt_version() == "10.3.0"  # nothing installed: JetPack 6's TensorRT
    header, _ = read_calibration_table(write_calibration_table(RANGES, tmp_path / "a.cache"))
    assert header == "TRT-100300-EntropyCalibration2"
    header, _ = read_calibration_table(write_calibration_table(RANGES, tmp_path / "b.cache", trt_version="10.8.0"))
    assert header == "TRT-100800-EntropyCalibration2"
    _fake_trt(monkeypatch, "11.4.0.106")  # 11.x installed: it cannot read the table, so target 10.3.0
    assert target_trt_version() == "10.3.0"
    with pytest.raises(DsedgeError, match="only TensorRT 10.x has implicit INT8 calibration"):
        write_calibration_table(RANGES, tmp_path / "c.cache", trt_version="11.0.0")
    assert not (tmp_path / "c.cache").exists()


def test_scale_hex_round_trip() -> None:
    for value in (1e-8, 0.0123, 1.0, 3.5e4):
        assert hex_scale(scale_hex(value)) == pytest.approx(value, rel=1e-7)
    assert scale_hex(1.0) == "3f800000"
