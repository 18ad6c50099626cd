"""PyTorch runner: eager FP32 (the reference every bench row is compared to), FP16/BF16, torch.compile.

The bench needs the strongest PyTorch baselines a user actually has, measured the
same way as every exported backend: eager FP32 (speed-up 1.0 by definition),
eager FP16/BF16 where the device has fast kernels for them, and `torch.compile`.
On CPU the compiled row freezes the weights (`torch._inductor.config.freezing`):
without freezing, inductor keeps every convolution as the same aten/oneDNN call
eager makes and only fuses the elementwise glue, which is why plain
torch.compile measured about 1.09x eager on a 2-core CPU; frozen weights are
constant-folded (BatchNorm into conv) and pre-packed for oneDNN. Options for the
bench to try: `compile_mode` ("default", "max-autotune" — minutes on a small
CPU), `channels_last`, `freezing`, and bf16 `autocast` (FP32 weights, bf16
compute) instead of casting the weights. On CUDA "reduce-overhead" (CUDA graphs)
is the default mode. On CUDA the runner also times itself with CUDA events, with
and without host<->device copies, and replays a captured CUDA graph for eager
models (trtexec's `--noDataTransfers` / `--useCudaGraph` equivalents), see
:meth:`TorchRunner.device_timings`.

This module imports torch; the torch-free runtime never imports it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dsedge.bundle import read_manifest
from dsedge.engines.base import Runner, RunnerInfo, check_batch
from dsedge.errors import EngineError

PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> the first CUDA GPU when there is one, else the CPU; a clear error for bad names."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise EngineError(f"unknown device '{device}'", "use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError("device 'cuda' requested but PyTorch sees no CUDA GPU", "use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda:0")
    elif dev.type != "cpu":
        raise EngineError(f"device '{device}' is not supported by the bench", "use auto, cpu or cuda[:N]")
    return dev


def cpu_bf16_supported() -> bool:
    """True when PyTorch's oneDNN reports bf16 kernels on this CPU (avx512_bf16 / AMX); else bf16 is emulated.

    This is torch's own answer (its oneDNN build and ISA check), so it stays here, where torch is
    imported; the CPU's flags (`dsedge.machine.native_bf16`) are the torch-free fact the OpenVINO
    runner and the doctor use.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - older/odd builds
        return False


def precision_supported(precision: str, device: torch.device) -> tuple[bool, str]:
    """Whether `precision` has fast kernels on `device`, and why not (a bench skip reason)."""
    if precision not in PRECISIONS:
        return False, f"PyTorch precision must be one of {', '.join(PRECISIONS)}"
    if precision == "fp32":
        return True, ""
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return False, f"{torch.cuda.get_device_name(device)} has no bf16 support"
        return True, ""
    if precision == "bf16":
        if cpu_bf16_supported():
            return True, ""
        return False, "this CPU has no native bf16 (needs avx512_bf16 or AMX)"
    return False, "PyTorch has no fast fp16 kernels on CPU (fp16 runs on CUDA only)"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


class TorchRunner(Runner):
    """A PyTorch model behind the runner interface.

    Build it from a model object, a dsedge checkpoint (`checkpoint=`), or a
    random-init registry model (`model_name=`, seeded, for the default bench).
    Low precision casts weights and inputs (`model.to(dtype)`); SimAM keeps its
    statistics in float32 internally. Logits always come back as float32 NumPy.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        checkpoint: str | Path | None = None,
        model_name: str = "ds_resnet50",
        num_classes: int = 3,
        precision: str = "fp32",
        compile: bool = False,
        compile_mode: str | None = None,
        device: str = "auto",
        channels_last: bool | None = None,
        threads: int | None = None,
        seed: int = 0,
        freezing: bool | None = None,
        autocast: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        ok, why = precision_supported(precision, self.device)
        if not ok:
            raise EngineError(f"torch {precision} on {self.device.type}: {why}")
        if threads:
            torch.set_num_threads(int(threads))
        source = "model object"
        if model is None:
            if checkpoint is not None:
                from dsedge.models.checkpoint import load_checkpoint

                model, _meta = load_checkpoint(checkpoint)
                source = f"checkpoint {Path(checkpoint).name}"
            else:
                from dsedge.models.zoo import create_model

                torch.manual_seed(seed)
                model = create_model(model_name, num_classes)
                source = f"random init (seed {seed})"
        self.precision = precision
        # autocast: FP32 weights and inputs, low-precision compute where autocast allows it
        self.autocast_dtype = _DTYPES[precision] if autocast and precision != "fp32" else None
        self.dtype = torch.float32 if self.autocast_dtype is not None else _DTYPES[precision]
        # channels_last helps cuDNN tensor cores; on CPU oneDNN reorders anyway and eager
        # depthwise convs get slower, so it defaults to CUDA only.
        self.channels_last = (self.device.type == "cuda") if channels_last is None else channels_last
        model = model.eval().to(self.device, dtype=self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.compiled = bool(compile)
        self.compile_mode = None
        # Freezing (constant weights, folded and pre-packed) is inductor's CPU inference path.
        self.freezing = bool(compile) and (self.device.type == "cpu" if freezing is None else bool(freezing))
        self._fn: Callable[[torch.Tensor], torch.Tensor] = model
        if compile:
            self.compile_mode = compile_mode or ("reduce-overhead" if self.device.type == "cuda" else "default")
            try:
                self._fn = torch.compile(model, mode=self.compile_mode, dynamic=False)
            except Exception as e:  # noqa: BLE001 - torch.compile raises many types
                raise EngineError(f"torch.compile failed: {e}") from e
        self._first_call_s: dict[int, float] = {}
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self._info = RunnerInfo(
            backend="torch-compile" if compile else "torch",
            precision=precision,
            device=device_name(self.device),
            version=torch.__version__,
            extra={
                "source": source,
                "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
                "channels_last": self.channels_last,
                **({"compile_mode": self.compile_mode, "freezing": self.freezing} if compile else {}),
                **({"autocast": str(self.autocast_dtype).replace("torch.", "")} if self.autocast_dtype else {}),
            },
        )

    @classmethod
    def from_bundle(
        cls, bundle: Any, precision: str, *, checkpoint: str | Path | None = None, compile: bool = False,
        mode: str | None = None, device: str = "auto", threads: int | None = None, seed: int = 0,
        channels_last: bool | None = None, freezing: bool | None = None, autocast: bool = False, **_: Any,
    ) -> TorchRunner:
        """Registry entry point: the checkpoint the bundle was exported from, else the bundle's model
        with random weights (seeded); options of other backends (`interleaved`) are ignored."""
        model_name, num_classes = "ds_resnet50", 3
        manifest = getattr(bundle, "manifest", None)
        if checkpoint is None and isinstance(manifest, dict) and manifest:
            m = read_manifest(manifest)
            model_name = str(m.model.get("name", model_name))
            num_classes = (len(m.classes) if "classes" in manifest else 0) or num_classes
        return cls(checkpoint=checkpoint, model_name=model_name, num_classes=num_classes, precision=precision,
                   compile=compile, compile_mode=mode, device=device, channels_last=channels_last,
                   threads=threads, seed=seed, freezing=freezing, autocast=autocast)

    @property
    def info(self) -> RunnerInfo:
        return self._info

    @property
    def first_call_seconds(self) -> dict[int, float]:
        """Seconds of the first call per batch size (includes torch.compile's compile time)."""
        return dict(self._first_call_s)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, dtype=self.dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @property
    def has_device_timer(self) -> bool:
        """CUDA events exist only on CUDA devices (the `DeviceTimed` ability)."""
        return self.device.type == "cuda"

    @contextlib.contextmanager
    def _call_context(self) -> Iterator[None]:
        """Inductor freezing and autocast around a call (compilation happens lazily, at a call)."""
        with contextlib.ExitStack() as stack:
            if self.freezing:
                import torch._inductor.config as inductor_config

                stack.enter_context(inductor_config.patch(freezing=True))
            if self.autocast_dtype is not None:
                stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast_dtype))
            yield

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        try:
            with self._call_context():
                return self._fn(x)
        except Exception as e:  # noqa: BLE001 - surface compile/kernel failures as engine errors
            if self.compiled:
                raise EngineError(f"torch.compile ({self.compile_mode}) failed at run time: {e}") from e
            raise

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(check_batch(batch))
        n = int(x.shape[0])
        t0 = time.perf_counter() if n not in self._first_call_s else None
        with torch.inference_mode():
            out = self._forward(self._to_device(x))
            result = out.float().cpu().numpy()  # .cpu() waits for the GPU
        if t0 is not None:
            self._first_call_s[n] = time.perf_counter() - t0
        return result

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- CUDA-only timing helpers (the bench's device-event blocks) -----------------------------

    def _graph_for(self, x_dev: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Capture the eager model into a CUDA graph for this input shape (static in/out buffers)."""
        key = tuple(x_dev.shape)
        if key not in self._graphs:
            static_in = x_dev.clone()
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(3):  # warm-up on a side stream, as the CUDA graph docs require
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = self.model(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        return self._graphs[key]

    def device_timings(
        self,
        batch: np.ndarray,
        iters: int,
        *,
        warmup: int = 3,
        include_copies: bool = True,
        cuda_graph: bool = False,
    ) -> np.ndarray:
        """Per-iteration milliseconds measured with CUDA events (CUDA only).

        `include_copies`: pinned host -> device copy, compute, device -> host copy
        (what a caller sees); without it only the compute on a resident input.
        `cuda_graph`: replay a captured graph of the eager model (torch.compile's
        reduce-overhead mode already uses CUDA graphs, so it is refused there).
        """
        if self.device.type != "cuda":
            raise EngineError("device-event timing needs a CUDA device")
        if cuda_graph and self.compiled:
            raise EngineError("torch.compile reduce-overhead already replays CUDA graphs")
        x_host = torch.from_numpy(check_batch(batch)).to(self.dtype).pin_memory()
        x_dev = self._to_device(x_host)
        with torch.inference_mode():
            sample = self._forward(x_dev)
        out_host = torch.empty(tuple(sample.shape), dtype=sample.dtype).pin_memory()
        graph = self._graph_for(x_dev) if cuda_graph else None

        def step() -> None:
            if graph is not None:
                g, static_in, static_out = graph
                if include_copies:
                    static_in.copy_(x_host, non_blocking=True)
                g.replay()
                if include_copies:
                    out_host.copy_(static_out, non_blocking=True)
                return
            xd = self._to_device(x_host) if include_copies else x_dev
            out = self._forward(xd)
            if include_copies:
                out_host.copy_(out, non_blocking=True)

        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        times = np.empty(int(iters), dtype=np.float64)
        with torch.inference_mode():
            for _ in range(max(0, warmup)):
                step()
            torch.cuda.synchronize(self.device)
            for i in range(int(iters)):
                start.record()
                step()
                end.record()
                end.synchronize()
                times[i] = start.elapsed_time(end)
        return times

    def close(self) -> None:
        self._graphs.clear()
        self._fn = None  # type: ignore[assignment]
        self.model = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
