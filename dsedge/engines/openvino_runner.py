"""OpenVINO runner for CPUs (torch-free): FP32, bf16 on CPUs with native bf16 (AMX / avx512_bf16), INT8.

INT8 runs the bundle's `model.int8.onnx` — the TensorRT-form Q/DQ file — as is:
OpenVINO's CPU plugin turns each QuantizeLinear/DequantizeLinear pair around a
conv or matmul into a real INT8 kernel (VNNI/AMX), so one calibrated file serves
TensorRT on GPUs and OpenVINO on CPUs. Ops the file leaves in float stay f32.

OpenVINO's ONNX frontend rejects model-local functions, so the `dsedge::SimAM`
calls are inlined first (`onnx.inliner.inline_local_functions`) into a temporary
file — the same maths, as plain ONNX ops. The precision is always set
explicitly with `INFERENCE_PRECISION_HINT`: OpenVINO silently picks bf16 on AMX
CPUs when nothing is said, which would make an "fp32" row a bf16 one.

The model is compiled for a *static* input shape, once per batch size seen
(`static_shapes=True`, the default): on a 2-core AVX-512 CPU the static
1x3x224x224 FP32 model ran 24.5 ms against 26.6 ms for the dynamic-batch one,
with identical outputs (benchmarks/results/bench.md, section 4). A new batch size
costs one compilation (about a second) on its first call.
Install with the `openvino` extra: ``pip install 'dsedge[openvino]'``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.engines.base import Runner, RunnerInfo, check_batch
from dsedge.errors import EngineError, MissingDependencyError
from dsedge.machine import cpu_flags, native_bf16

PRECISIONS = ("fp32", "bf16", "int8")
MAX_STATIC_SHAPES = 4  # compiled static-shape models kept; the oldest is dropped beyond this
# int8: the Q/DQ file's quantized ops run as INT8 (VNNI/AMX); everything left in float stays f32.
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def _import_openvino():  # noqa: ANN202 - returns the module
    try:
        import openvino
    except ImportError as e:
        raise MissingDependencyError("openvino", "openvino", "OpenVINO CPU backend") from e
    return openvino


def bf16_support(core: object | None = None) -> tuple[bool, str]:
    """(supported, reason) for OpenVINO bf16 on this CPU: native flags (`dsedge.machine`) and OpenVINO's own capability."""
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
    """OpenVINO CPU `CompiledModel`s over an (inlined) ONNX file; any batch size.

    `OpenVinoRunner(model_path, precision="fp32"|"bf16"|"int8", threads=None,
    inline=True, static_shapes=True)`: `model_path` is `model.onnx` (or the
    pre-inlined `model.inline.onnx` with `inline=False`) for fp32/bf16 and
    `model.int8.onnx` for int8; `OpenVinoRunner.from_bundle(bundle, precision)`
    picks the file. With `static_shapes` one model is compiled per input shape (kept for the last
    `MAX_STATIC_SHAPES` shapes); without it one dynamic-batch model serves all.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        precision: str = "fp32",
        threads: int | None = None,
        inline: bool = True,
        static_shapes: bool = True,
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
        self._core, self._config = core, config
        self._requests: dict[tuple[int, ...], object] = {}
        try:
            self._model = core.read_model(str(load_path))
            shape = self._model.inputs[0].get_partial_shape()
            # Static compilation needs every non-batch dimension known.
            self.static_shapes = bool(static_shapes) and shape.rank.is_static and all(
                d.is_static for d in list(shape)[1:])
            first = (1, *(d.get_length() for d in list(shape)[1:])) if self.static_shapes else None
            self.compiled = self._compile(first)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            self._tmp.cleanup()
            raise EngineError(f"OpenVINO cannot compile {path}: {e}") from e
        self.request = self.compiled.create_infer_request()
        if first is not None:
            self._requests[first] = self.request
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
                "static_shapes": self.static_shapes,
            },
        )

    @classmethod
    def from_bundle(
        cls, bundle: Any, precision: str, *, threads: int | None = None, static_shapes: bool = True,
        **_: Any,
    ) -> OpenVinoRunner:
        """The bundle's file for `precision` (registry entry point; options of other backends are ignored).

        fp32/bf16 read the pre-inlined `model.inline.onnx` when the bundle has one
        (else `model.onnx`, inlined here); int8 reads `model.int8.onnx`, inlined here.
        """
        from dsedge.bundle import Bundle, load_bundle

        bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        if precision == "int8":
            return cls(bundle.require("onnx", "int8"), "int8", threads=threads, static_shapes=static_shapes)
        inline = bundle.find("onnx-inline", "fp32")
        if inline:
            return cls(bundle.path(inline[0]), precision, threads=threads, inline=False, static_shapes=static_shapes)
        return cls(bundle.require("onnx", "fp32"), precision, threads=threads, static_shapes=static_shapes)

    def _compile(self, shape: tuple[int, ...] | None):  # noqa: ANN202 - an ov.CompiledModel
        """Compile the model, reshaped to `shape` first when one is given (None = as read)."""
        model = self._model
        if shape is not None:
            model = model.clone()
            model.reshape(list(shape))
        return self._core.compile_model(model, "CPU", self._config)

    def _request_for(self, shape: tuple[int, ...]):  # noqa: ANN202 - an ov.InferRequest
        if not self.static_shapes:
            return self.request
        request = self._requests.pop(shape, None)
        if request is None:
            try:
                request = self._compile(shape).create_infer_request()
            except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
                raise EngineError(f"OpenVINO cannot compile {self.path} for input shape {shape}: {e}") from e
            if len(self._requests) >= MAX_STATIC_SHAPES:
                self._requests.pop(next(iter(self._requests)))  # the least recently used
        self._requests[shape] = request  # (re)insert last: most recently used
        return request

    @property
    def info(self) -> RunnerInfo:
        return self._info

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = check_batch(batch)
        result = self._request_for(tuple(x.shape)).infer({0: x})  # type: ignore[attr-defined]
        return np.array(result[0], dtype=np.float32)  # copy: the request reuses its buffer

    def infer_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of one call by name (logits, and e.g. class-activation maps), float32 copies."""
        x = check_batch(batch)
        result = self._request_for(tuple(x.shape)).infer({0: x})  # type: ignore[attr-defined]
        return {port.get_any_name(): np.array(value, dtype=np.float32) for port, value in result.items()}

    def close(self) -> None:
        self.request = None  # type: ignore[assignment]
        self._requests = {}
        self._model = None
        self.compiled = None  # type: ignore[assignment]
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()
