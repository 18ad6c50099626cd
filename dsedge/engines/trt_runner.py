"""TensorRT runner (torch-free): run a serialized engine through cuda-python (DESIGN §5, §6).

An engine is only valid for the TensorRT release and GPU model it was built
with. Before touching the plan, the runner compares its manifest entry with
the running TensorRT and GPU (`trt_versions`: the exact release, patch
included; a version-compatible plan also on newer releases of the same major
and from 10.x on 11.x) and refuses a mismatch with an `EngineError` that says
what was built where. `from_bundle` tries every engine that matches, best
first, before it gives up.

Execution follows NVIDIA's documented sequence: `set_input_shape`, then
`set_tensor_address` for every I/O tensor, then `execute_async_v3(stream)`,
with pinned host buffers and async copies on one stream. Buffers are sized
for the profile's maximum batch once, so addresses never change, which is
what makes CUDA-graph capture (`cuda_graph=True`) valid. NVIDIA documents a
graph as valid only for the shapes it was captured with, not after its context
was reshaped, so with graphs on each batch size gets its own execution context
(input shape set once, same I/O buffers) and its own graph, captured after one
uncaptured run: the bench's rows at batch 1, 8 and 32 then replay their graphs
instead of re-capturing on every row switch. The contexts run one after the
other on one stream, so they may share the one optimization profile (NVIDIA:
only contexts "in concurrent use" need separate profiles); at most
`MAX_GRAPH_SHAPES` are kept, least recently used first out. A failed capture
is ended, discarded and the CUDA runtime's last error cleared, and the runner
warns and continues without graphs, as trtexec does. Batches above the
profile's maximum are split into chunks, or refused with `split=False`.

The runner's device is made current at every call, not only at construction:
CUDA's current device is per thread, so two runners on two GPUs used from one
thread would otherwise launch the first one's engine on the second's device.
Engine inputs and outputs may be FP32 or FP16 (converted on the host); other
I/O types (INT8, BF16, ...) are refused with a clear error instead of feeding
raw float bytes to them.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.bundle import Bundle, load_bundle
from dsedge.engines.base import Runner, RunnerInfo, check_batch
from dsedge.engines.cuda_utils import (
    CudaGraph,
    DeviceBuffer,
    DeviceInfo,
    PinnedArray,
    Stream,
    device_info,
    import_cudart,
    set_device,
)
from dsedge.engines.trt_build import TensorRTWarning, import_tensorrt, make_logger
from dsedge.engines.trt_versions import same_release, version_mismatch
from dsedge.errors import BundleError, EngineError, MissingDependencyError

#: batch sizes that keep their own execution context and CUDA graph (bench: 1, 8, 32 and one spare)
MAX_GRAPH_SHAPES = 4
#: engine I/O types the runner converts to and from (float32 on the caller's side)
IO_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


@dataclass
class _ShapeContext:
    """An execution context fixed to one batch size, with its graphs (copies? -> graph)."""

    context: Any
    graphs: dict[bool, CudaGraph] = field(default_factory=dict)

    def drop_graphs(self) -> None:
        for graph in self.graphs.values():
            graph.destroy()
        self.graphs.clear()


def engine_mismatch(
    entry: dict[str, Any], trt_version: str, gpu: DeviceInfo, allow_other_gpu: bool = False
) -> str | None:
    """Why an engine (its manifest entry) cannot run here, or None when it can.

    TensorRT version: the same release (patch included), or for a version
    compatible engine a newer one NVIDIA supports (`trt_versions`). GPU: the
    compute capability must match; the GPU name too unless `allow_other_gpu`
    (same architecture, other model: runs, but tuned for another chip).
    """
    built = entry.get("tensorrt_version")
    if built:
        why = version_mismatch(str(built), str(trt_version), bool(entry.get("version_compatible")))
        if why:
            return why
    cc = entry.get("compute_capability")
    if cc and str(cc) != gpu.compute_capability:
        return (
            f"it was built for compute capability {cc} ({entry.get('gpu', '?')}) and this GPU "
            f"({gpu.name}) is {gpu.compute_capability}"
        )
    name = entry.get("gpu")
    if name and name != gpu.name and not allow_other_gpu:
        return f"it was built on a {name} and this GPU is a {gpu.name}"
    return None


def _preference(entry: dict[str, Any], trt_version: str, gpu: DeviceInfo) -> int:
    """Lower is better: exact TensorRT release on this GPU model, then version-compatible, then other GPU model."""
    rank = 0
    if not same_release(str(entry.get("tensorrt_version", trt_version)), trt_version):
        rank += 1
    if entry.get("gpu") and entry.get("gpu") != gpu.name:
        rank += 2
    return rank


class TrtRunner(Runner):
    """One TensorRT engine with one execution context, stream and static device buffers."""

    def __init__(
        self,
        engine_path: str | Path,
        precision: str | None = None,
        *,
        entry: dict[str, Any] | None = None,
        device: int = 0,
        cuda_graph: bool = False,
        split: bool = True,
        allow_other_gpu: bool = False,
        output: str | None = None,
    ) -> None:
        self.trt = trt = import_tensorrt()
        self.rt = rt = import_cudart()
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise EngineError(f"TensorRT engine not found: {self.path}")
        entry = entry or {}
        self.gpu = device_info(device, rt)
        why = engine_mismatch(entry, trt.__version__, self.gpu, allow_other_gpu)
        if why:
            raise EngineError(
                f"refusing to run {self.path.name}: {why}",
                "rebuild it here with `dsedge build BUNDLE --precision ...`",
            )
        self.device = int(device)
        set_device(device, rt)  # TensorRT deserializes onto the current device
        self.precision = precision or entry.get("precision", "unknown")
        self.split = split
        self.use_graph = cuda_graph
        self.graph_error: str | None = None
        self._shapes: OrderedDict[int, _ShapeContext] = OrderedDict()  # batch size -> context + graphs
        self._buffers: list[Any] = []
        self.stream: Stream | None = None

        self._logger = make_logger(trt)
        self.runtime = trt.Runtime(self._logger)
        if entry.get("version_compatible"):
            self.runtime.engine_host_code_allowed = True  # the lean runtime is host code in the plan
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EngineError(
                f"TensorRT cannot deserialize {self.path}: the file is corrupt or was built by another "
                f"TensorRT version or GPU ({self._logger.tail() or 'no log'})",
                "rebuild it with `dsedge build`",
            )
        self._setup_io(output)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineError(f"TensorRT could not create an execution context for {self.path.name}")
        try:
            self._allocate()
        except BaseException:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------------

    def _setup_io(self, output: str | None) -> None:
        trt, engine = self.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise EngineError(f"{self.path.name}: expected 1 input and >= 1 output, got {inputs} / {outputs}")
        self.input_name = inputs[0]
        self.output_names = outputs
        self.output_name = output or outputs[0]
        if self.output_name not in outputs:
            raise EngineError(f"{self.path.name} has no output {self.output_name!r} (outputs: {outputs})")
        lo, _opt, hi = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(self.input_name, 0))
        self.min_batch, self.max_batch = lo[0], hi[0]
        self.profile = (lo[0], _opt[0], hi[0])
        self.sample_shape = hi[1:]
        self.dtypes = {n: self._io_dtype(n) for n in names}

    def _io_dtype(self, name: str) -> np.dtype:
        """The NumPy type of I/O tensor `name`; only FP32 and FP16 I/O can take images and give logits."""
        trt_type = self.engine.get_tensor_dtype(name)
        try:
            dtype = np.dtype(self.trt.nptype(trt_type))
        except TypeError:  # BF16, FP8: no NumPy type
            dtype = None
        if dtype not in IO_DTYPES:
            raise EngineError(
                f"{self.path.name}: I/O tensor {name!r} is {getattr(trt_type, 'name', trt_type)}; "
                "dsedge feeds and reads float32 or float16 tensors",
                "build the engine from an ONNX with float32 (or float16) inputs and outputs",
            )
        return dtype

    def _allocate(self) -> None:
        rt, ctx = self.rt, self.context
        self.stream = Stream(rt)
        max_shape = (self.max_batch, *self.sample_shape)
        if not ctx.set_input_shape(self.input_name, max_shape):
            raise EngineError(f"{self.path.name} rejected the input shape {max_shape}")
        self.host: dict[str, PinnedArray] = {}
        self.dev: dict[str, DeviceBuffer] = {}
        for name in [self.input_name, *self.output_names]:
            shape = max_shape if name == self.input_name else tuple(int(d) for d in ctx.get_tensor_shape(name))
            host = PinnedArray(rt, shape, self.dtypes[name])
            dev = DeviceBuffer(rt, host.nbytes)
            self._buffers += [host, dev]
            self.host[name], self.dev[name] = host, dev
        self._bind(ctx)

    def _bind(self, ctx: Any) -> None:
        """Point every I/O tensor of `ctx` at the runner's static device buffers."""
        for name, dev in self.dev.items():
            if not ctx.set_tensor_address(name, dev.ptr):
                raise EngineError(f"TensorRT refused the device address of tensor {name!r}")

    def _activate(self) -> None:
        """Make the runner's device current (CUDA's current device is per thread, shared by all runners)."""
        set_device(self.device, self.rt)

    # -- Runner interface ----------------------------------------------------------------------

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo(
            backend="tensorrt",
            precision=str(self.precision),
            device=self.gpu.name,
            version=str(self.trt.__version__),
            extra={
                "engine": self.path.name,
                "profile": list(self.profile),
                "cuda_graph": self.use_graph,
                "cuda_graph_error": self.graph_error,
                "cuda_graph_batches": sorted(self._shapes),
                "compute_capability": self.gpu.compute_capability,
            },
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(batch, (self.output_name,))[self.output_name]

    def infer_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every engine output of one call by name (logits, and `cam` when exported with --cam)."""
        return self._infer(batch, tuple(self.output_names))

    def _infer(self, batch: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        self._activate()
        x = check_batch(batch, channels=self.sample_shape[0])
        if tuple(x.shape[1:]) != self.sample_shape:
            raise EngineError(f"{self.path.name} takes N x {self.sample_shape}, got {tuple(x.shape)}")
        n = x.shape[0]
        if n > self.max_batch:
            if not self.split:
                raise EngineError(
                    f"batch of {n} exceeds the engine's profile maximum {self.max_batch}",
                    "rebuild with a larger --max-batch, or let the runner split batches (split=True)",
                )
            parts = [self._infer(x[i : i + self.max_batch], names) for i in range(0, n, self.max_batch)]
            return {k: np.concatenate([p[k] for p in parts]) for k in names}
        if n < self.min_batch:  # pad up to the profile minimum, drop the padding afterwards
            pad = np.zeros((self.min_batch - n, *self.sample_shape), dtype=x.dtype)
            return {k: v[:n] for k, v in self._infer(np.concatenate([x, pad]), names).items()}
        return self._run(x, names)

    def _run(self, x: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        n = x.shape[0]
        inp = self.host[self.input_name]
        inp.array[:n] = x.astype(inp.dtype, copy=False)
        ctx = self._launch(n, copies=True)
        out = {}
        for name in names:  # every output was copied to host memory; read back the ones asked for
            shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
            host = self.host[name].array
            out[name] = np.array(host.reshape(-1)[: int(np.prod(shape))].reshape(shape), dtype=np.float32)
        return out

    def run_resident(self, batch_size: int) -> None:
        """Run the engine on whatever is in its device buffers, without host<->device copies.

        For latency measurements like trtexec's `--noDataTransfers`: the bench
        times this against `infer` to show what the copies cost.
        """
        if not self.min_batch <= batch_size <= self.max_batch:
            raise EngineError(f"batch {batch_size} is outside the engine's profile {self.min_batch}..{self.max_batch}")
        self._activate()
        self._launch(int(batch_size), copies=False)

    def _launch(self, n: int, copies: bool) -> Any:
        """Run batch n (through its own context's CUDA graph if enabled), wait; return the context that ran."""
        assert self.stream is not None
        if self.use_graph:
            shaped = self._context_for(n)
            graph = self._graph_for(shaped, n, copies)
            if graph is not None:
                graph.launch(self.stream)
                self.stream.synchronize()
                return shaped.context
        shape = (n, *self.sample_shape)
        if not self.context.set_input_shape(self.input_name, shape):
            raise EngineError(f"{self.path.name} rejected the input shape {shape}")
        self._enqueue(self.context, n, copies)
        self.stream.synchronize()
        return self.context

    def _context_for(self, n: int) -> _ShapeContext:
        """The execution context kept for batch n (made now if needed; the least recently used goes first)."""
        if n in self._shapes:
            self._shapes.move_to_end(n)
            return self._shapes[n]
        while len(self._shapes) >= MAX_GRAPH_SHAPES:
            _n, old = self._shapes.popitem(last=False)
            old.drop_graphs()
        ctx = self.engine.create_execution_context()
        if ctx is None:
            raise EngineError(f"TensorRT could not create an execution context for {self.path.name}")
        shape = (n, *self.sample_shape)
        if not ctx.set_input_shape(self.input_name, shape):
            raise EngineError(f"{self.path.name} rejected the input shape {shape}")
        self._bind(ctx)
        self._shapes[n] = shaped = _ShapeContext(ctx)
        return shaped

    def _graph_for(self, shaped: _ShapeContext, n: int, copies: bool) -> CudaGraph | None:
        """The graph of batch n's context, captured now if it has none yet."""
        graph = shaped.graphs.get(copies)
        if graph is None:
            graph = self._capture(shaped.context, n, copies)
            if graph is not None:
                shaped.graphs[copies] = graph
        return graph

    def _drop_graphs(self) -> None:
        for shaped in self._shapes.values():
            shaped.drop_graphs()
        self._shapes.clear()

    def _enqueue(self, ctx: Any, n: int, copies: bool = True) -> None:
        """H2D copy of n samples, the engine, D2H copies of the outputs: all async on our stream."""
        assert self.stream is not None
        if copies:
            inp = self.host[self.input_name]
            per_sample = inp.nbytes // self.max_batch
            self.stream.h2d(self.dev[self.input_name].ptr, inp.ptr, n * per_sample)
        if not ctx.execute_async_v3(self.stream.ptr):
            raise EngineError(f"TensorRT execution of {self.path.name} failed ({self._logger.tail() or 'no log'})")
        if copies:
            for name in self.output_names:
                nbytes = int(np.prod(ctx.get_tensor_shape(name))) * self.dtypes[name].itemsize
                self.stream.d2h(self.host[name].ptr, self.dev[name].ptr, nbytes)

    def _capture(self, ctx: Any, n: int, copies: bool) -> CudaGraph | None:
        """Capture (copies +) engine for batch n on `ctx`; None (graphs off, with a warning) if capture fails.

        TensorRT needs one uncaptured enqueue after a shape change, so one runs
        first. If anything in the capture fails, the capture is ended, its
        graph destroyed and the last CUDA error cleared (a stream left
        capturing, or a stale error, would break every later launch), and the
        runner falls back to plain enqueues, as trtexec does.
        """
        assert self.stream is not None
        self._enqueue(ctx, n, copies)
        self.stream.synchronize()
        try:
            self.stream.begin_capture()
            self._enqueue(ctx, n, copies)
        except EngineError as e:
            self.stream.abort_capture()
            return self._graphs_off(e)
        try:
            return self.stream.end_capture()
        except EngineError as e:  # invalidated capture or failed instantiation: nothing is left behind
            return self._graphs_off(e)

    def _graphs_off(self, error: EngineError) -> None:
        self.graph_error = error.message
        self.use_graph = False
        self._drop_graphs()
        warnings.warn(
            f"CUDA graph capture failed for {self.path.name} ({error.message}); running without CUDA graphs",
            TensorRTWarning,
            stacklevel=6,
        )
        return None

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()

    def close(self) -> None:
        if self._buffers or self._shapes:
            self._activate()  # free on the runner's own device
        self._drop_graphs()
        for buf in self._buffers:
            buf.free()
        self._buffers.clear()
        if self.stream is not None:
            self.stream.destroy()
            self.stream = None
        self.context = None
        self.engine = None

    # -- bundles -------------------------------------------------------------------------------

    @classmethod
    def from_bundle(
        cls, bundle: Any, precision: str | None = None, *, device: int = 0, **kwargs: Any
    ) -> TrtRunner:
        """The bundle's engine for `precision` that matches this TensorRT and GPU, or a clear error."""
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle, verify=True)
        trt = import_tensorrt()
        gpu = device_info(device, import_cudart())
        names = bundle.find("tensorrt", precision)
        if not names:
            raise BundleError(
                f"bundle {bundle.root} has no TensorRT engine{' for ' + precision if precision else ''}",
                "run `dsedge build BUNDLE --precision ...` on this device",
            )
        reasons, candidates = [], []
        allow_other = bool(kwargs.get("allow_other_gpu", False))
        for name in names:
            entry = bundle.artifacts[name]
            why = engine_mismatch(entry, trt.__version__, gpu, allow_other)
            if why is None:
                candidates.append((_preference(entry, trt.__version__, gpu), name, entry))
            else:
                reasons.append(f"{name}: {why}")
        for _rank, name, entry in sorted(candidates, key=lambda c: c[0]):
            try:
                return cls(bundle.path(name), entry.get("precision"), entry=entry, device=device, **kwargs)
            except MissingDependencyError:
                raise
            except EngineError as e:  # e.g. TensorRT refused to deserialize it: try the next match
                reasons.append(f"{name}: {e.message}")
        raise EngineError(
            "no engine in the bundle can run here: " + "; ".join(reasons),
            "rebuild with `dsedge build BUNDLE --precision ...` on this device",
        )
