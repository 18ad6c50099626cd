"""dsedge.machine: CPU facts parsed from fake /proc/cpuinfo texts, GPUs from a fake nvidia-smi, versions."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dsedge import machine

XEON = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_bf16 amx_int8\n"
        "vmx flags\t: vnmi preemption_timer\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu\n")
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 5\n"


def test_parse_x86_cpuinfo_takes_the_first_processor() -> None:
    model, flags = machine.parse_cpuinfo(XEON)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == {"fpu", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16",
                     "amx_int8"}  # not processor 1's, not "vmx flags"


def test_parse_arm_cpuinfo() -> None:
    model, flags = machine.parse_cpuinfo(ARM)
    assert model == "Raspberry Pi 5"
    assert {"asimd", "sve", "bf16", "i8mm"} <= flags and not machine.native_bf16(flags)


def test_cpu_info_and_flags_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "cpuinfo"
    f.write_text(XEON)
    info = machine.cpu_info(f)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+" and info["logical_cores"] == os.cpu_count()
    assert info["flags"]["amx_bf16"] and info["flags"]["avx512_vnni"] and not info["flags"]["avx512_fp16"]
    assert set(info["flags"]) == set(machine.CPU_FLAGS)
    assert machine.cpu_flags(f) >= {"avx512f", "amx_bf16"} and machine.cpu_model(f) == info["model"]
    assert machine.native_bf16(machine.cpu_flags(f))


def test_missing_cpuinfo_is_an_answer(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert machine.cpu_flags(missing) == set()
    assert machine.cpu_model(missing)  # falls back to platform's name
    assert not any(machine.cpu_info(missing)["flags"].values())


def test_native_bf16() -> None:
    assert machine.native_bf16({"avx512_bf16"}) and machine.native_bf16({"amx_bf16", "avx2"})
    assert not machine.native_bf16({"avx2", "avx512f"}) and not machine.native_bf16(set())


def _fake_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + script)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_gpus_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_smi(monkeypatch, tmp_path, "echo 'NVIDIA L4, 575.57.08, 23034, 8.9'\necho 'NVIDIA L4, 575.57.08, 23034, 8.9'\n")
    assert machine.nvidia_smi()["gpus"][0] == {"name": "NVIDIA L4", "driver": "575.57.08", "memory_mib": "23034",
                                               "compute_capability": "8.9"}
    assert machine.gpu_summary() == {"name": "NVIDIA L4", "driver": "575.57.08", "memory": "23034 MiB", "count": 2}


def test_old_driver_without_compute_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_smi(monkeypatch, tmp_path, 'case "$1" in *compute_cap*) exit 6;; esac\necho "Tesla T4, 470.1, 15109"\n')
    assert machine.nvidia_smi() == {"available": True,
                                    "gpus": [{"name": "Tesla T4", "driver": "470.1", "memory_mib": "15109"}]}


def test_no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi anywhere
    assert machine.nvidia_smi() == {"available": False, "reason": "nvidia-smi not found (no NVIDIA driver)"}
    assert machine.gpu_summary() is None


def test_package_versions_and_system() -> None:
    import numpy

    assert machine.package_versions(["numpy", "no-such-package-dsedge"]) == {"numpy": numpy.__version__}
    assert machine.package_versions(["no-such-package-dsedge"], missing="not installed") == {
        "no-such-package-dsedge": "not installed"}
    host = machine.system()
    assert host["python"] == "{}.{}.{}".format(*sys.version_info[:3]) and set(host) == {"host", "os", "platform",
                                                                                         "python"}


def test_machine_never_imports_torch() -> None:
    code = "import sys, dsedge.machine as m; m.cpu_info(); m.gpu_summary(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
