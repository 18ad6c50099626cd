"""`dsedge doctor`: every probe reports instead of crashing, and sees fake TensorRT/CUDA/GPUs when present.

Parsing /proc/cpuinfo is tested in tests/test_machine.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from fake_tensorrt import install

from dsedge.doctor import doctor, nvidia_smi


def test_doctor_on_this_machine() -> None:
    r = doctor()
    assert r["onnxruntime"]["available"] and "CPUExecutionProvider" in r["onnxruntime"]["providers"]
    assert "onnxruntime:CPU" in r["backends"]
    assert set(r["summary"]) >= {"GPU", "CUDA (cuda-python)", "TensorRT", "ONNX Runtime", "OpenVINO", "CPU", "torch",
                                 "backends (registry)"}
    reg = {b["name"]: b for b in r["registry"]}  # every registered backend, read from the registry
    assert list(reg)[:5] == ["torch", "torch-compile", "onnxruntime", "openvino", "tensorrt"]
    assert reg["openvino"]["precisions"] == ["fp32", "bf16", "int8"] and reg["openvino"]["runtime"] is True
    assert reg["onnxruntime"]["available"] and (reg["tensorrt"]["available"] or reg["tensorrt"]["reason"])
    assert all(isinstance(v, bool) for v in r["cpu"]["flags"].values())
    assert r["versions"]["numpy"]
    json.dumps(r)  # the report is JSON-able as is
    if not r["tensorrt"]["available"]:
        assert "dsedge[tensorrt]" in r["tensorrt"]["reason"]


def test_fake_gpu_stack_is_reported(monkeypatch, tmp_path: Path) -> None:
    install(monkeypatch, "11.4.0.106", gpu_name="NVIDIA L4", cc=(8, 9))
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA L4, 575.57.08, 23034, 8.9'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert nvidia_smi()["gpus"] == [{"name": "NVIDIA L4", "driver": "575.57.08", "memory_mib": "23034",
                                      "compute_capability": "8.9"}]
    r = doctor()
    assert r["tensorrt"] == {"available": True, "version": "11.4.0.106", "typing": "strongly typed only (11.x)"}
    assert r["cuda"]["available"] and r["cuda"]["devices"][0]["compute_capability"] == "8.9"
    assert r["backends"][0] == "tensorrt"


def test_doctor_cli_json(capsys) -> None:
    from dsedge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["doctor", "--json"])
    assert e.value.code == 0
    assert "backends" in json.loads(capsys.readouterr().out)
