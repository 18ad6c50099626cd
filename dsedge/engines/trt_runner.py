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
what makes CUDA-graph capture (`cuda_graph=True`) valid. A graph is captured
per batch size after one uncaptured run (TensorRT needs it after a shape
change) and is only replayed while the context keeps that shape: NVIDIA
documents a graph as valid for the shapes it was captured with, not after the
context was reshaped in between, so a batch-size change re-captures. A failed
capture is ended and discarded, and the runner warns and continues without
graphs, as trtexec does. Batches above the profile's maximum are split into
chunks, or refused with `split=False`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

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
from dsedge.runtime.bundle import Bundle, load_bundle


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
        set_device(device, rt)  # TensorRT deserializes onto the current device
        self.precision = precision or entry.get("precision", "unknown")
        self.split = split
        self.use_graph = cuda_graph
        self.graph_error: str | None = None
        self._graphs: dict[bool, CudaGraph] = {}  # copies? -> graph, all for batch size `_graph_batch`
        self._graph_batch: int | None = None
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
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}

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
            if not ctx.set_tensor_address(name, dev.ptr):
                raise EngineError(f"TensorRT refused the device address of tensor {name!r}")

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
                "compute_capability": self.gpu.compute_capability,
            },
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
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
            return np.concatenate([self.infer(x[i : i + self.max_batch]) for i in range(0, n, self.max_batch)])
        if n < self.min_batch:  # pad up to the profile minimum, drop the padding afterwards
            pad = np.zeros((self.min_batch - n, *self.sample_shape), dtype=x.dtype)
            return self.infer(np.concatenate([x, pad]))[:n]
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        inp = self.host[self.input_name]
        inp.array[:n] = x.astype(inp.dtype, copy=False)
        out_shape = self._launch(n, copies=True)
        out = self.host[self.output_name].array
        count = int(np.prod(out_shape))
        return np.array(out.reshape(-1)[:count].reshape(out_shape), dtype=np.float32)

    def run_resident(self, batch_size: int) -> None:
        """Run the engine on whatever is in its device buffers, without host<->device copies.

        For latency measurements like trtexec's `--noDataTransfers`: the bench
        times this against `infer` to show what the copies cost.
        """
        if not self.min_batch <= batch_size <= self.max_batch:
            raise EngineError(f"batch {batch_size} is outside the engine's profile {self.min_batch}..{self.max_batch}")
        self._launch(int(batch_size), copies=False)

    def _launch(self, n: int, copies: bool) -> tuple[int, ...]:
        """Set the shape, run (through a CUDA graph for this batch size if enabled), wait; return the output shape."""
        assert self.stream is not None
        shape = (n, *self.sample_shape)
        if not self.context.set_input_shape(self.input_name, shape):
            raise EngineError(f"{self.path.name} rejected the input shape {shape}")
        out_shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))
        graph = self._graph_for(n, copies) if self.use_graph else None
        if graph is not None:
            graph.launch(self.stream)
        else:
            self._enqueue(n, copies)
        self.stream.synchronize()
        return out_shape

    def _graph_for(self, n: int, copies: bool) -> CudaGraph | None:
        """The graph for batch n, captured now if needed; graphs of another batch size are dropped first."""
        if self._graph_batch != n:
            self._drop_graphs()
            self._graph_batch = n
        graph = self._graphs.get(copies)
        if graph is None:
            graph = self._capture(n, copies)
            if graph is not None:
                self._graphs[copies] = graph
        return graph

    def _drop_graphs(self) -> None:
        for graph in self._graphs.values():
            graph.destroy()
        self._graphs.clear()
        self._graph_batch = None

    def _enqueue(self, n: int, copies: bool = True) -> None:
        """H2D copy of n samples, the engine, D2H copies of the outputs: all async on our stream."""
        assert self.stream is not None
        if copies:
            inp = self.host[self.input_name]
            per_sample = inp.nbytes // self.max_batch
            self.stream.h2d(self.dev[self.input_name].ptr, inp.ptr, n * per_sample)
        if not self.context.execute_async_v3(self.stream.ptr):
            raise EngineError(f"TensorRT execution of {self.path.name} failed ({self._logger.tail() or 'no log'})")
        if copies:
            for name in self.output_names:
                nbytes = int(np.prod(self.context.get_tensor_shape(name))) * self.dtypes[name].itemsize
                self.stream.d2h(self.host[name].ptr, self.dev[name].ptr, nbytes)

    def _capture(self, n: int, copies: bool) -> CudaGraph | None:
        """Capture (copies +) engine for batch n; None (graphs off, with a warning) if capture fails.

        TensorRT needs one uncaptured enqueue after a shape change, so one runs
        first. If anything in the capture fails, the capture is ended and its
        graph destroyed (a stream left capturing would break every later
        launch), and the runner falls back to plain enqueues, as trtexec does.
        """
        assert self.stream is not None
        self._enqueue(n, copies)
        self.stream.synchronize()
        try:
            self.stream.begin_capture()
            self._enqueue(n, copies)
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
            stacklevel=5,
        )
        return None

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()

    def close(self) -> None:
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
