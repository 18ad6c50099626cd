"""OpenVINO runner for CPUs (torch-free): FP32, and bf16 on CPUs with native bf16 (AMX / avx512_bf16).

OpenVINO's ONNX frontend rejects model-local functions, so the `dsedge::SimAM`
calls are inlined first (`onnx.inliner.inline_local_functions`) into a temporary
file — the same maths, as plain ONNX ops. The precision is always set
explicitly with `INFERENCE_PRECISION_HINT`: OpenVINO silently picks bf16 on AMX
CPUs when nothing is said, which would make an "fp32" row a bf16 one.
Install with the `openvino` extra: ``pip install 'dsedge[openvino]'``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from dsedge.engines.base import Runner, RunnerInfo, check_batch
from dsedge.errors import EngineError, MissingDependencyError

PRECISIONS = ("fp32", "bf16")
_HINTS = {"fp32": "f32", "bf16": "bf16"}


def _import_openvino():  # noqa: ANN202 - returns the module
    try:
        import openvino
    except ImportError as e:
        raise MissingDependencyError("openvino", "openvino", "OpenVINO CPU backend") from e
    return openvino


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first processor (empty when /proc/cpuinfo is not there)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU computes bf16 natively: AMX (amx_bf16) or AVX-512 BF16 (avx512_bf16)."""
    flags = cpu_flags() if flags is None else flags
    return bool({"amx_bf16", "avx512_bf16"} & flags)


def bf16_support(core: object | None = None) -> tuple[bool, str]:
    """(supported, reason) for OpenVINO bf16 on this CPU: native flags and OpenVINO's own capability."""
    flags = cpu_flags()
    if not native_bf16(flags):
        return False, "this CPU has no AMX or avx512_bf16 (OpenVINO would emulate bf16)"
    if core is not None:
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")  # type: ignore[attr-defined]
        if "BF16" not in caps:
            return False, "OpenVINO does not report BF16 among the CPU's capabilities"
    return True, "amx_bf16" if "amx_bf16" in flags else "avx512_bf16"


def inline_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> bool:
    """Write `src` with every model-local function inlined to `dst`; False when there was none."""
    import onnx
    import onnx.inliner

    model = onnx.load(str(src))
    had_functions = len(model.functions) > 0
    if had_functions:
        model = onnx.inliner.inline_local_functions(model)
    onnx.save(model, str(dst))
    return had_functions


class OpenVinoRunner(Runner):
    """An OpenVINO CPU `CompiledModel` over the (inlined) FP32 ONNX; dynamic batch."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        precision: str = "fp32",
        threads: int | None = None,
        inline: bool = True,
    ) -> None:
        ov = _import_openvino()
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"ONNX model not found: {path}")
        if precision not in PRECISIONS:
            raise EngineError(
                f"OpenVINO precision '{precision}' is not supported here",
                f"choose one of: {', '.join(PRECISIONS)}",
            )
        core = ov.Core()
        if precision == "bf16":
            ok, why = bf16_support(core)
            if not ok:
                raise EngineError(f"OpenVINO bf16: {why}")
        self._tmp = tempfile.TemporaryDirectory(prefix="dsedge-ov-")
        load_path = path
        if inline:
            load_path = Path(self._tmp.name) / "model.inline.onnx"
            try:
                inline_onnx(path, load_path)
            except Exception as e:  # noqa: BLE001 - onnx raises several types for bad files
                self._tmp.cleanup()
                raise EngineError(f"cannot inline the SimAM functions of {path}: {e}") from e
        config: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(core.read_model(str(load_path)), "CPU", config)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            self._tmp.cleanup()
            raise EngineError(f"OpenVINO cannot compile {path}: {e}") from e
        self.request = self.compiled.create_infer_request()
        self._output = self.compiled.outputs[0]
        self.path = path
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type
        got = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self._info = RunnerInfo(
            backend="openvino",
            precision=precision,
            device=str(core.get_property("CPU", "FULL_DEVICE_NAME")),
            version=ov.__version__.split("-")[0],
            extra={
                "device_plugin": "CPU",
                "inference_precision": got,
                "threads": threads or "default",
                "file": path.name,
                "inlined_simam": inline,
            },
        )

    @property
    def info(self) -> RunnerInfo:
        return self._info

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = check_batch(batch)
        result = self.request.infer({0: x})
        return np.array(result[self._output], dtype=np.float32)  # copy: the request reuses its buffer

    def close(self) -> None:
        self.request = None  # type: ignore[assignment]
        self.compiled = None  # type: ignore[assignment]
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()
