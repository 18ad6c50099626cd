"""Facts about this machine: CPU model, cores and ISA flags, native bf16, GPUs, OS, package versions.

`dsedge doctor`, the bench's environment block, export's tool versions and the
OpenVINO runner's bf16 gate all describe the same machine; reading it in one
place keeps a bench report and a doctor report from disagreeing about it (they
once parsed /proc/cpuinfo two different ways). Every probe reports instead of
raising: a missing /proc/cpuinfo, no NVIDIA driver or an absent package is an
answer, not a crash. Torch-free and import-light (standard library only), so the
device runtime and `dsedge doctor` can use it on a runtime-only install.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CPUINFO = "/proc/cpuinfo"
#: ISA features that matter for CPU inference, reported by `dsedge doctor` as booleans.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
#: Flags that mean the CPU computes bf16 natively (otherwise OpenVINO/oneDNN emulate it).
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
_MODEL_KEYS = ("model name", "Model", "Hardware")  # x86, then ARM boards
_FLAG_KEYS = ("flags", "Features")


def parse_cpuinfo(text: str) -> tuple[str | None, set[str]]:
    """(CPU model, flags of the first processor) from /proc/cpuinfo text; (None, set()) when absent."""
    model: str | None = None
    flags: set[str] | None = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in _MODEL_KEYS and value.strip():
            model = value.strip()
        elif key in _FLAG_KEYS and flags is None:
            flags = set(value.split())
    return model, flags or set()


def _read(cpuinfo: str | os.PathLike[str]) -> str:
    try:
        return Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | os.PathLike[str] = CPUINFO) -> set[str]:
    """The CPU feature flags of the first processor (empty when /proc/cpuinfo is not there)."""
    return parse_cpuinfo(_read(cpuinfo))[1]


def cpu_model(cpuinfo: str | os.PathLike[str] = CPUINFO) -> str:
    """The CPU's marketing name, else what `platform` knows (processor, then architecture)."""
    model, _ = parse_cpuinfo(_read(cpuinfo))
    return model or platform.processor() or platform.machine()


def cpu_info(cpuinfo: str | os.PathLike[str] = CPUINFO) -> dict[str, Any]:
    """CPU model, architecture, logical cores and the `CPU_FLAGS` as booleans (doctor's `cpu` block)."""
    model, flags = parse_cpuinfo(_read(cpuinfo))
    return {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "flags": {f: f in flags for f in CPU_FLAGS},
    }


def native_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU computes bf16 natively: AMX (amx_bf16) or AVX-512 BF16 (avx512_bf16)."""
    flags = cpu_flags() if flags is None else flags
    return bool(BF16_FLAGS & flags)


def system() -> dict[str, str]:
    """Host name, OS, platform string and Python version."""
    return {"host": platform.node(), "os": f"{platform.system()} {platform.release()}",
            "platform": platform.platform(), "python": platform.python_version()}


def package_versions(names: Iterable[str], missing: str | None = None) -> dict[str, str]:
    """Installed versions by distribution name; an absent package maps to `missing`, or is left out when None."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if missing is not None:
                out[name] = missing
    return out


def _parse_smi(out: str) -> list[dict[str, str]]:
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        gpu = {"name": parts[0], "driver": parts[1], "memory_mib": parts[2]}
        if len(parts) > 3:
            gpu["compute_capability"] = parts[3]
        gpus.append(gpu)
    return gpus


def nvidia_smi(timeout: float = 15) -> dict[str, Any]:
    """GPUs as `nvidia-smi` sees them (name, driver, memory, compute capability); no CUDA package needed."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {"available": False, "reason": "nvidia-smi not found (no NVIDIA driver)"}
    fields = "name,driver_version,memory.total,compute_cap"
    reason = "nvidia-smi failed"
    for query in (fields, fields.rsplit(",", 1)[0]):  # old drivers lack compute_cap
        try:
            out = subprocess.run(
                [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=timeout, check=True,
            ).stdout
        except (subprocess.SubprocessError, OSError) as e:
            reason = f"nvidia-smi failed: {e}"
            continue
        gpus = _parse_smi(out)
        return {"available": bool(gpus), "gpus": gpus}
    return {"available": False, "reason": reason}


def gpu_summary() -> dict[str, Any] | None:
    """The first GPU's name, driver and memory plus the GPU count (None without an NVIDIA GPU)."""
    smi = nvidia_smi(timeout=10)
    gpus = smi.get("gpus") or []
    if not gpus:
        return None
    first = gpus[0]
    return {"name": first["name"], "driver": first["driver"], "memory": f"{first['memory_mib']} MiB",
            "count": len(gpus)}
