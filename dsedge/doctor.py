"""`dsedge doctor`: what this machine can run — the first thing to check on a new device.

Reports the GPU (through `nvidia-smi`, which works without any Python CUDA
package), CUDA through cuda-python, TensorRT, ONNX Runtime's execution
providers, OpenVINO devices, the CPU model and the instruction-set features
that matter for CPU inference (AVX2, AVX-512, VNNI, AMX), and package
versions. The machine facts (CPU, GPU, OS, versions) come from `dsedge.machine`,
which the bench report reads too, so the two never describe one machine
differently; `cpu_info` and `nvidia_smi` are re-exported here. Every probe is
independent and catches its own failure, so a broken driver or a
half-installed package shows up as a line in the report instead of a crash. torch is only looked up by metadata: the device runtime never
needs it, and importing it would take seconds. The backends come from the
registry (`dsedge.engines.registry`), so a newly registered backend shows up
here without touching this module.
"""

from __future__ import annotations

from typing import Any

from dsedge.machine import cpu_info, nvidia_smi, package_versions, system

PACKAGES = ("dsedge", "numpy", "pillow", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt",
            "cuda-python", "cuda-bindings", "torch", "torchvision")


def cuda_info() -> dict[str, Any]:
    """CUDA runtime/driver versions and devices through cuda-python (what the TensorRT runner uses)."""
    try:
        from dsedge.engines.cuda_utils import cuda_call, device_info, import_cudart

        rt = import_cudart()
        count = int(cuda_call(rt.cudaGetDeviceCount(), "cudaGetDeviceCount"))
        return {
            "available": count > 0,
            "runtime_version": int(cuda_call(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")),
            "driver_version": int(cuda_call(rt.cudaDriverGetVersion(), "cudaDriverGetVersion")),
            "devices": [vars(device_info(i, rt)) for i in range(count)],
        }
    except Exception as e:  # noqa: BLE001 - report, never crash
        return {"available": False, "reason": getattr(e, "message", None) or f"{type(e).__name__}: {e}"}


def tensorrt_info() -> dict[str, Any]:
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install raising OSError
        return {"available": False, "reason": f"tensorrt not importable ({type(e).__name__}); pip install 'dsedge[tensorrt]'"}
    major = int(str(trt.__version__).split(".")[0])
    return {
        "available": True,
        "version": trt.__version__,
        "typing": "strongly typed only (11.x)" if major >= 11 else "weak typing + FP16 flag, or strongly typed",
    }


def onnxruntime_info() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except Exception as e:  # noqa: BLE001
        return {"available": False, "reason": f"onnxruntime not importable: {e}"}
    return {"available": True, "version": ort.__version__, "providers": ort.get_available_providers(),
            "device": ort.get_device()}


def openvino_info() -> dict[str, Any]:
    try:
        import openvino as ov  # type: ignore[import-not-found]

        devices = ov.Core().available_devices
    except Exception as e:  # noqa: BLE001
        return {"available": False, "reason": f"openvino not usable ({type(e).__name__}); pip install 'dsedge[openvino]'"}
    return {"available": True, "version": ov.__version__, "devices": list(devices)}


def registry_info() -> list[dict[str, Any]]:
    """Every registered backend: its facts and whether its packages are installed (nothing is imported)."""
    from dsedge.engines import registry

    rows = []
    for b in registry.backends():
        ok, why = b.availability()
        rows.append({"name": b.name, "precisions": list(b.precisions), "artifact": b.artifact, "device": b.device,
                     "runtime": b.runtime, "auto_rank": b.auto_rank, "available": ok, "reason": why,
                     "description": b.description})
    return rows


def _registry_row(reg: list[dict[str, Any]]) -> dict[str, Any]:
    parts = [f"{b['name']} ({'/'.join(b['precisions'])}{', runtime' if b['runtime'] else ''})"
             + ("" if b["available"] else f": {b['reason']}") for b in reg]
    return {"ok": all(b["available"] for b in reg), "detail": "; ".join(parts)}


def _summary(r: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    gpu, cuda, trt, ort, ov, cpu = r["gpu"], r["cuda"], r["tensorrt"], r["onnxruntime"], r["openvino"], r["cpu"]
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8") if cpu["flags"].get(f)]

    def row(ok: bool, yes: str, no: str) -> dict[str, Any]:
        return {"ok": ok, "detail": yes if ok else no}

    gpus = ", ".join(f"{g['name']} (sm {g.get('compute_capability', '?')}, driver {g['driver']})" for g in gpu.get("gpus", []))
    summary = {
        "GPU": row(gpu["available"], gpus, gpu.get("reason", "none")),
        "CUDA (cuda-python)": row(cuda["available"], f"runtime {cuda.get('runtime_version')}, driver {cuda.get('driver_version')}", cuda.get("reason", "no device")),
        "TensorRT": row(trt["available"], f"{trt.get('version')}: {trt.get('typing')}", trt.get("reason", "")),
        "ONNX Runtime": row(ort["available"], f"{ort.get('version')}: {', '.join(ort.get('providers', []))}", ort.get("reason", "")),
        "OpenVINO": row(ov["available"], f"{ov.get('version')}: {', '.join(ov.get('devices', []))}", ov.get("reason", "")),
        "CPU": row(True, f"{cpu['model']} x{cpu['logical_cores']}; {' '.join(isa) or 'no AVX2'}", ""),
        "torch": row(bool(r["versions"].get("torch")), f"{r['versions'].get('torch')} (training/export only)", "not installed (not needed on a device)"),
    }
    summary["backends (registry)"] = _registry_row(r["registry"])
    return summary, usable_backends(r)


def usable_backends(r: dict[str, Any]) -> list[str]:
    """The registry's backends that can run here, in `auto`'s order first (ONNX Runtime per execution provider).

    Generated from the registry, so a backend registered in one line is listed
    too; a CUDA backend also needs the CUDA runtime, a probe's failure hides it.
    """
    probes = {"tensorrt": r["tensorrt"], "onnxruntime": r["onnxruntime"], "openvino": r["openvino"]}
    rows = sorted(r["registry"], key=lambda b: (not b["runtime"], b.get("auto_rank") is None, b.get("auto_rank") or 0))
    out: list[str] = []
    for b in rows:
        usable = b["available"] and probes.get(b["name"], {"available": True})["available"]
        if not usable or (b["device"] == "cuda" and not r["cuda"]["available"]):
            continue
        if b["name"] == "onnxruntime":
            out += [f"onnxruntime:{p.replace('ExecutionProvider', '')}" for p in r["onnxruntime"]["providers"]
                    if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")]
        else:
            out.append(b["name"])
    return out


def doctor() -> dict[str, Any]:
    """Probe everything; return a JSON-able report with a human `summary` and usable `backends`."""
    host = system()
    report: dict[str, Any] = {
        "python": host["python"],
        "platform": host["platform"],
        "cpu": cpu_info(),
        "gpu": nvidia_smi(),
        "cuda": cuda_info(),
        "tensorrt": tensorrt_info(),
        "onnxruntime": onnxruntime_info(),
        "openvino": openvino_info(),
        "versions": package_versions(PACKAGES),
        "registry": registry_info(),
    }
    report["summary"], report["backends"] = _summary(report)
    return report
