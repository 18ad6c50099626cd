"""Fake `tensorrt` (10.x or 11.x shape) and `cuda.bindings.runtime` modules that record every call.

TensorRT cannot be installed on our machines, so the builder and runner are
checked against these fakes: they expose the documented API surface (names,
signatures, enum values, return conventions such as cuda-python's
`(err, value)` tuples) and record each call in `FakeEnv.calls`, so tests can
assert the exact sequence.

Version-specific facts the fake mirrors (NVIDIA's Python API docs and headers):

* `NetworkDefinitionCreationFlag`: on 10.x EXPLICIT_BATCH = 0 (deprecated) and
  STRONGLY_TYPED = 1; on 11.x STRONGLY_TYPED = 0 (deprecated and ignored: every
  network is strongly typed) and 1 is PREFER_JIT_PYTHON_PLUGINS.
* `BuilderFlag` values are the C++ enum's of each release (NvInfer.h of NVIDIA/TensorRT
  release/10.0 ... release/11.1, read for `BUILDER_FLAGS_10` / `BUILDER_FLAGS_11`): 10.x
  adds flags over its minors (INT4 10.1, REFIT_INDIVIDUAL 10.2, STRICT_NANS and
  MONITOR_MEMORY 10.6, FP4 and EDITABLE_TIMING_CACHE 10.8, DISTRIBUTIVE_INDEPENDENCE = 28
  in 10.12); 11.x removed FP16/INT8/BF16/FP8/INT4/FP4, the precision-constraint flags and
  REJECT_EMPTY_ALGORITHMS (AttributeError, as in the real module), kept DIRECT_IO and
  SAFETY_SCOPE (deprecated) and renumbered the rest (VERSION_COMPATIBLE 12,
  EXCLUDE_LEAN_RUNTIME 13, ERROR_ON_TIMING_CACHE_MISS 15, ..., DISTRIBUTIVE_INDEPENDENCE 27).
  `NetworkDefinitionCreationFlag` gains PREFER_JIT/AOT_PYTHON_PLUGINS = 2/3 in 10.9.
  TF32 is on by default in a new builder config.
* Engine I/O tensors have the ONNX's I/O types (FLOAT, HALF, INT8, BF16, ...): a model
  with float16 inputs makes an engine with HALF I/O; `nptype` maps them like the real
  module (BF16 has no NumPy type: TypeError).
* cuda-python keeps the *last error* like the CUDA runtime: a failed call sets it,
  `cudaGetLastError` returns and clears it. The fake's `execute_async_v3` fails while a
  stale error is pending (TensorRT checks for launch errors), which is why trtexec clears
  it with `cudaGetLastError()` after a failed graph capture.
* An engine runs only on the device that was current when it was deserialized:
  `execute_async_v3` with another current device fails (two runners on two GPUs).
* The engine inspector writes each tensor's type either as one "Format/Datatype" field
  (10.x) or split into "Format" and "Datatype" (the fields NVIDIA's 11.1 tooling reads,
  `.agents/skills/trt-perf-analysis`); `FakeEnv.inspector_fields` picks, default by version.
* A strongly typed network refuses precision builder flags (the build fails).
* `set_timing_cache` returns False for a cache made on another GPU or TensorRT
  version (unless `ignore_mismatch`).
* `deserialize_cuda_engine` returns None (and logs an error) for a plan from
  another TensorRT version (any component, patch and build included) or another
  compute capability; a version-compatible plan runs on the same or a newer
  TensorRT of the same major, 10.x plans also on 11.x and 8.x plans on 10.x,
  and only with `engine_host_code_allowed`.
* The engine inspector reports per-layer precisions when the config asked for
  `ProfilingVerbosity.DETAILED`.

The fakes also *work*: the "parser" reads the real ONNX file (the tiny
GAP -> Gemm test model), the "plan" is JSON with a magic header, "device
memory" is host memory addressed through ctypes, copies really move bytes,
CUDA-graph capture defers work until launch, and `execute_async_v3` computes
the tiny model from the bytes at the bound addresses. So data-flow mistakes
(wrong address, wrong byte count, missing copy) show up as wrong numbers.
Faults can be injected through `FakeEnv.capture_fault` ("enqueue", "end",
"instantiate") and `FakeEnv.device_count`.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

PLAN_MAGIC = b"FAKEPLAN"
CACHE_MAGIC = b"FAKECACHE"

# cudaError_t values used below (CUDA runtime API)
CUDA_SUCCESS, CUDA_ERROR_MEMORY_ALLOCATION, CUDA_ERROR_INVALID_DEVICE = 0, 2, 101
CUDA_ERROR_CAPTURE_UNSUPPORTED, CUDA_ERROR_CAPTURE_INVALIDATED = 900, 901


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(version).split(".") if p.isdigit())


def cache_info(data: bytes) -> dict[str, Any]:
    """What a fake timing cache holds: {"gpu", "version", "entries"} (tests read files with it)."""
    assert data.startswith(CACHE_MAGIC), data[:20]
    return json.loads(data[len(CACHE_MAGIC):])


@dataclass
class FakeEnv:
    """Shared state of one fake tensorrt + cudart pair."""

    trt_version: str
    gpu_name: str
    cc: tuple[int, int]
    device_count: int = 1
    current_device: int = 0
    capture_fault: str | None = None  # "enqueue" | "end" | "instantiate"
    last_error: int = 0  # the CUDA runtime's last error, returned and cleared by cudaGetLastError
    inspector_fields: str = "combined"  # "combined": "Format/Datatype"; "split": "Format" + "Datatype"
    calls: list[tuple[str, Any]] = field(default_factory=list)
    memory: dict[int, Any] = field(default_factory=dict)  # address -> ctypes buffer
    capturing: dict[int, list] = field(default_factory=dict)  # stream id -> deferred ops
    graphs: set[int] = field(default_factory=set)  # live cudaGraph_t / cudaGraphExec_t ids
    trt: types.ModuleType | None = None
    cudart: types.ModuleType | None = None

    def record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def find(self, name: str) -> list[tuple]:
        return [args for n, args in self.calls if n == name]

    def alloc(self, nbytes: int) -> int:
        buf = ctypes.create_string_buffer(int(nbytes))
        addr = ctypes.addressof(buf)
        self.memory[addr] = buf
        return addr

    def submit(self, stream: int, op: Any) -> None:
        """Run `op` now, or defer it into the graph being captured on `stream`."""
        if stream in self.capturing:
            self.capturing[stream].append(op)
        else:
            op()


# ---------------------------------------------------------------------------------------------
# cuda.bindings.runtime


class _Props:
    def __init__(self, env: FakeEnv) -> None:
        self.name = env.gpu_name.encode() + b"\0" * 8
        self.major, self.minor = env.cc
        self.totalGlobalMem = 80 << 30


class _Handle:
    """cuda-python returns typed handle objects (cudaStream_t, cudaGraph_t, ...) that convert with int()."""

    def __init__(self, ident: int) -> None:
        self.ident = ident

    def __int__(self) -> int:
        return self.ident


class _Graph(_Handle):
    def __init__(self, ident: int, ops: list) -> None:
        super().__init__(ident)
        self.ops = ops


def make_cudart(env: FakeEnv) -> types.ModuleType:
    m = types.ModuleType("cuda.bindings.runtime")

    class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
        cudaSuccess = CUDA_SUCCESS
        cudaErrorMemoryAllocation = CUDA_ERROR_MEMORY_ALLOCATION
        cudaErrorInvalidDevice = CUDA_ERROR_INVALID_DEVICE
        cudaErrorStreamCaptureUnsupported = CUDA_ERROR_CAPTURE_UNSUPPORTED
        cudaErrorStreamCaptureInvalidated = CUDA_ERROR_CAPTURE_INVALIDATED

    class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
        cudaStreamCaptureModeGlobal = 0
        cudaStreamCaptureModeThreadLocal = 1

    m.cudaError_t, m.cudaMemcpyKind, m.cudaStreamCaptureMode = cudaError_t, cudaMemcpyKind, cudaStreamCaptureMode
    ok = cudaError_t.cudaSuccess
    counter = iter(range(1000, 10**9))

    m.IMPLS = {}  # name -> implementation, for arity checks against the real bindings

    def fn(name: str, impl: Any) -> None:
        m.IMPLS[name] = impl

        def wrapper(*args: Any) -> Any:
            env.record(name, *args)
            result = impl(*args)
            if int(result[0]) != CUDA_SUCCESS and name != "cudaGetLastError":
                env.last_error = int(result[0])  # like the runtime: kept until cudaGetLastError
            return result

        setattr(m, name, wrapper)

    def set_device(d: int) -> tuple:
        if not 0 <= int(d) < env.device_count:
            return (cudaError_t.cudaErrorInvalidDevice,)
        env.current_device = int(d)
        return (ok,)

    fn("cudaGetDeviceCount", lambda: (ok, env.device_count))
    fn("cudaGetDeviceProperties", lambda d: (ok, _Props(env)))
    fn("cudaSetDevice", set_device)
    def get_last_error() -> tuple:
        err, env.last_error = env.last_error, CUDA_SUCCESS
        return (cudaError_t(err),)

    fn("cudaGetLastError", get_last_error)
    fn("cudaRuntimeGetVersion", lambda: (ok, 12080))
    fn("cudaDriverGetVersion", lambda: (ok, 12080))
    fn("cudaMalloc", lambda n: (ok, env.alloc(n)))
    fn("cudaMallocHost", lambda n: (ok, env.alloc(n)))
    fn("cudaFree", lambda p: (ok,) if env.memory.pop(p, None) is not None else (cudaError_t(2),))
    fn("cudaFreeHost", lambda p: (ok,) if env.memory.pop(p, None) is not None else (cudaError_t(2),))
    fn("cudaStreamCreate", lambda: (ok, _Handle(next(counter))))
    fn("cudaStreamDestroy", lambda s: (ok,))

    def synchronize(stream: Any) -> tuple:
        if int(stream) in env.capturing:  # forbidden while capturing: it also invalidates the capture
            env.capturing[int(stream)].append(None)
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        return (ok,)

    fn("cudaStreamSynchronize", synchronize)

    def memcpy(dst: int, src: int, n: int, kind: Any, stream: Any) -> tuple:
        assert int(dst) in env.memory or int(src) in env.memory, "copy touches no allocation"
        env.submit(int(stream), lambda: ctypes.memmove(int(dst), int(src), int(n)))
        return (ok,)

    fn("cudaMemcpyAsync", memcpy)

    def begin(stream: Any, mode: Any) -> tuple:
        assert int(stream) not in env.capturing, "capture begun twice on one stream"
        env.capturing[int(stream)] = []
        return (ok,)

    def end(stream: Any) -> tuple:
        ops = env.capturing.pop(int(stream))  # capture mode always ends, even on error
        if env.capture_fault == "end" or None in ops:
            return (cudaError_t.cudaErrorStreamCaptureInvalidated, None)
        graph = _Graph(next(counter), ops)
        env.graphs.add(int(graph))
        return (ok, graph)

    fn("cudaStreamBeginCapture", begin)
    fn("cudaStreamEndCapture", end)

    def instantiate(graph: _Graph, flags: int) -> tuple:
        if env.capture_fault == "instantiate":
            return (cudaError_t.cudaErrorStreamCaptureInvalidated, None)
        exec_ = _Graph(next(counter), list(graph.ops))
        env.graphs.add(int(exec_))
        return (ok, exec_)

    fn("cudaGraphInstantiateWithFlags", instantiate)

    def launch(graph_exec: _Graph, stream: Any) -> tuple:
        for op in graph_exec.ops:
            op()
        return (ok,)

    def destroy(graph: _Graph) -> tuple:
        env.graphs.discard(int(graph))
        return (ok,)

    fn("cudaGraphLaunch", launch)
    fn("cudaGraphExecDestroy", destroy)
    fn("cudaGraphDestroy", destroy)
    return m


# ---------------------------------------------------------------------------------------------
# tensorrt

#: BuilderFlag values of NvInfer.h, TensorRT 10.x: name -> (value, first 10.x minor that has it).
BUILDER_FLAGS_10 = {
    "FP16": (0, 0), "INT8": (1, 0), "DEBUG": (2, 0), "GPU_FALLBACK": (3, 0), "REFIT": (4, 0),
    "DISABLE_TIMING_CACHE": (5, 0), "TF32": (6, 0), "SPARSE_WEIGHTS": (7, 0), "SAFETY_SCOPE": (8, 0),
    "OBEY_PRECISION_CONSTRAINTS": (9, 0), "PREFER_PRECISION_CONSTRAINTS": (10, 0), "DIRECT_IO": (11, 0),
    "REJECT_EMPTY_ALGORITHMS": (12, 0), "VERSION_COMPATIBLE": (13, 0), "EXCLUDE_LEAN_RUNTIME": (14, 0),
    "FP8": (15, 0), "ERROR_ON_TIMING_CACHE_MISS": (16, 0), "BF16": (17, 0), "DISABLE_COMPILATION_CACHE": (18, 0),
    "STRIP_PLAN": (19, 0), "REFIT_IDENTICAL": (20, 0), "WEIGHT_STREAMING": (21, 0), "INT4": (22, 1),
    "REFIT_INDIVIDUAL": (23, 2), "STRICT_NANS": (24, 6), "MONITOR_MEMORY": (25, 6), "FP4": (26, 8),
    "EDITABLE_TIMING_CACHE": (27, 8), "DISTRIBUTIVE_INDEPENDENCE": (28, 12),
}
#: BuilderFlag values of NvInfer.h, TensorRT 11.0 and 11.1: the precision flags are gone, the rest renumbered.
BUILDER_FLAGS_11 = {
    "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6, "SPARSE_WEIGHTS": 7,
    "SAFETY_SCOPE": 8, "DIRECT_IO": 11, "VERSION_COMPATIBLE": 12, "EXCLUDE_LEAN_RUNTIME": 13,
    "ERROR_ON_TIMING_CACHE_MISS": 15, "DISABLE_COMPILATION_CACHE": 17, "STRIP_PLAN": 18, "REFIT_IDENTICAL": 19,
    "WEIGHT_STREAMING": 20, "REFIT_INDIVIDUAL": 22, "STRICT_NANS": 23, "MONITOR_MEMORY": 24,
    "EDITABLE_TIMING_CACHE": 26, "DISTRIBUTIVE_INDEPENDENCE": 27,
}
#: TensorRT's DataType values (NvInferRuntimeBase.h) and the NumPy type `trt.nptype` gives each (None: TypeError)
DATA_TYPES = {"FLOAT": (0, np.float32), "HALF": (1, np.float16), "INT8": (2, np.int8), "INT32": (3, np.int32),
              "BOOL": (4, np.bool_), "UINT8": (5, np.uint8), "FP8": (6, None), "BF16": (7, None),
              "INT64": (8, np.int64)}
#: ONNX TensorProto element type -> TensorRT DataType name, for the engine's I/O tensors
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 9: "BOOL", 2: "UINT8", 16: "BF16", 7: "INT64"}


def builder_flags(version: str) -> dict[str, int]:
    """The BuilderFlag members of TensorRT `version` (10.x or 11.x), as the real module has them."""
    major, minor = (version_tuple(version) + (0,))[:2]
    if major >= 11:
        return dict(BUILDER_FLAGS_11)
    return {name: value for name, (value, since) in BUILDER_FLAGS_10.items() if minor >= since}


def creation_flags(version: str) -> dict[str, int]:
    """NetworkDefinitionCreationFlag members of TensorRT `version`."""
    major, minor = (version_tuple(version) + (0,))[:2]
    if major >= 11:
        return {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}
    flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    if minor >= 9:
        flags.update(PREFER_JIT_PYTHON_PLUGINS=2, PREFER_AOT_PYTHON_PLUGINS=3)
    return flags


PRECISION_FLAGS = ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4")
# how the engine inspector spells a tensor's type (DETAILED verbosity, no execution context attached)
INSPECTOR_TYPES = {"FP32": "Row major linear FP32", "FP16": "Row major linear FP16 format",
                   "INT8": "Row major linear Int8 format"}
#: the same types with the format split off into its own field
SPLIT_TYPES = {"FP32": "Float", "FP16": "Half", "INT8": "Int8"}
_FLOAT_OPS = ("Conv", "Gemm", "MatMul", "GlobalAveragePool", "ReduceMean", "Sigmoid", "Mul", "Add", "Div", "Sub")


def plan_runs_on(plan: dict, version: str, cc: tuple[int, int], host_code_allowed: bool) -> str | None:
    """Why the real runtime would refuse this plan here (None: it deserializes)."""
    built, running = version_tuple(plan["version"]), version_tuple(version)
    if plan.get("version_compatible"):
        pairs = {(built[0], built[0]), (10, 11), (8, 10)}
        if (built[0], running[0]) not in pairs or running < built:
            return f"version-compatible plan from {plan['version']} cannot run on {version}"
        if not host_code_allowed:
            return "the plan contains host code (lean runtime); set engine_host_code_allowed"
    elif built != running:
        return f"plan built with TensorRT {plan['version']}, this is {version}"
    if tuple(plan["cc"]) != tuple(cc):
        return f"plan built for SM {plan['cc']}, this GPU is SM {list(cc)}"
    return None


def _layer_precisions(model: onnx.ModelProto, strongly_typed: bool, flags: set[str]) -> list[dict]:
    """The precision each ONNX node would run in: typed from the model, or chosen by the flags."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types_ = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    types_.update({t.name: t.data_type for t in g.initializer})
    dq_outputs = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    layers = []
    for node in g.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast", "Flatten"):
            continue
        if strongly_typed:
            if any(i in dq_outputs for i in node.input):
                precision = "INT8"
            else:
                elem = types_.get(node.input[0], onnx.TensorProto.FLOAT)
                precision = "FP16" if elem == onnx.TensorProto.FLOAT16 else "FP32"
        elif "INT8" in flags and node.op_type in ("Conv", "Gemm", "MatMul"):
            precision = "INT8"
        else:
            precision = "FP16" if "FP16" in flags and node.op_type in _FLOAT_OPS else "FP32"
        layers.append({"name": node.name or f"{node.op_type}_{len(layers)}", "type": node.op_type,
                       "precision": precision})
    return layers


def make_trt(env: FakeEnv) -> types.ModuleType:
    m = types.ModuleType("tensorrt")
    m.__version__ = env.trt_version
    major = int(env.trt_version.split(".")[0])

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    severity_enum = Severity

    class ILogger:
        Severity = severity_enum

        def __init__(self) -> None:
            pass

    class Logger(ILogger):
        WARNING = Severity.WARNING

        def __init__(self, min_severity: Any = Severity.WARNING) -> None:
            super().__init__()

        def log(self, severity: Any, msg: str) -> None:
            pass

    m.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", creation_flags(env.trt_version))
    m.BuilderFlag = enum.IntEnum("BuilderFlag", builder_flags(env.trt_version))
    m.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1})
    m.TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    m.DataType = enum.IntEnum("DataType", {name: value for name, (value, _np) in DATA_TYPES.items()})
    m.ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2})
    m.LayerInformationFormat = enum.IntEnum("LayerInformationFormat", {"ONELINE": 0, "JSON": 1})
    m.ILogger, m.Logger = ILogger, Logger

    def nptype(dt: Any) -> type:
        np_type = DATA_TYPES[m.DataType(dt).name][1]
        if np_type is None:  # the real message for BF16 / FP8
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return np_type

    m.nptype = nptype

    class Tensor:
        def __init__(self, name: str, shape: tuple) -> None:
            self.name, self.shape = name, shape

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            typed_bit = 1 << int(m.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            self.strongly_typed = major >= 11 or bool(flags & typed_bit)
            self.prefer_jit_plugins = major >= 11 and bool(flags & (1 << 1))
            self.inputs: list[Tensor] = []
            self.model: dict | None = None
            self.onnx: onnx.ModelProto | None = None

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            env.record("OnnxParser", network)
            self.network, self.errors = network, []

        def parse_from_file(self, path: str) -> bool:
            env.record("parse_from_file", path)
            try:
                model = onnx.load(path)
            except Exception as e:  # noqa: BLE001
                self.errors = [f"cannot read {path}: {e}"]
                return False
            g = model.graph
            dims = [d.dim_value if d.dim_value > 0 else -1 for d in g.input[0].type.tensor_type.shape.dim]
            self.network.inputs = [Tensor(g.input[0].name, tuple(dims))]
            weights = {t.name: numpy_helper.to_array(t).astype(np.float32).tolist() for t in g.initializer}
            io_types = {v.name: ONNX_TO_TRT.get(v.type.tensor_type.elem_type, "FLOAT") for v in (g.input[0], g.output[0])}
            self.network.model = {"input": g.input[0].name, "output": g.output[0].name, "weights": weights,
                                  "dtypes": io_types}
            self.network.onnx = model
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            if data and not data.startswith(CACHE_MAGIC):
                raise RuntimeError("invalid timing cache")
            info = cache_info(data) if data else {"gpu": None, "version": None, "entries": 0}
            self.gpu, self.version, self.entries = info["gpu"], info["version"], int(info["entries"])

        def serialize(self) -> bytes:
            info = {"gpu": self.gpu, "version": self.version, "entries": self.entries}
            return CACHE_MAGIC + json.dumps(info).encode()

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            env.record("profile.set_shape", name, tuple(lo), tuple(opt), tuple(hi))
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def __init__(self) -> None:
            self.flags: set = {"TF32"}  # TF32 is on by default (NVIDIA's BuilderFlag.TF32 docs)
            self.cache: TimingCache | None = None
            self.profiles: list[Profile] = []
            self._level = 3
            self.profiling_verbosity = m.ProfilingVerbosity.LAYER_NAMES_ONLY

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            env.record("set_memory_pool_limit", pool, size)

        @property
        def builder_optimization_level(self) -> int:
            return self._level

        @builder_optimization_level.setter
        def builder_optimization_level(self, level: int) -> None:
            env.record("builder_optimization_level", level)
            self._level = level

        def set_flag(self, flag: Any) -> None:
            env.record("set_flag", flag.name)
            self.flags.add(flag.name)

        def clear_flag(self, flag: Any) -> None:
            env.record("clear_flag", flag.name)
            self.flags.discard(flag.name)

        def get_flag(self, flag: Any) -> bool:
            return flag.name in self.flags

        def create_timing_cache(self, data: bytes) -> TimingCache:
            env.record("create_timing_cache", bytes(data))
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            env.record("set_timing_cache", cache.entries, ignore_mismatch)
            here = (env.gpu_name, env.trt_version)
            if cache.entries and (cache.gpu, cache.version) != here and not ignore_mismatch:
                return False  # the documented failure: a cache from another device/version
            cache.gpu, cache.version = here
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            env.record("get_timing_cache")
            assert self.cache is not None
            return self.cache

        def add_optimization_profile(self, profile: Profile) -> int:
            env.record("add_optimization_profile")
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Builder:
        def __init__(self, logger: Any) -> None:
            env.record("Builder", env.current_device)
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            env.record("create_network", flags)
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            env.record("build_serialized_network")
            if network.model is None or not config.profiles or config.cache is None:
                return None
            if network.strongly_typed and config.flags & set(PRECISION_FLAGS):
                self.logger.log(Severity.ERROR, "precision builder flags are not allowed on a strongly typed network")
                return None
            config.cache.entries += 1  # a build adds timings to the cache
            name = network.model["input"]
            lo, opt, hi = config.profiles[0].shapes[name]
            layers = []
            if config.profiling_verbosity == m.ProfilingVerbosity.DETAILED and network.onnx is not None:
                layers = _layer_precisions(network.onnx, network.strongly_typed, config.flags)
            plan = {**network.model, "profile": [lo, opt, hi], "version": env.trt_version, "cc": list(env.cc),
                    "device": env.current_device, "version_compatible": "VERSION_COMPATIBLE" in config.flags,
                    "tf32": "TF32" in config.flags, "layers": layers,
                    "verbosity": int(config.profiling_verbosity)}
            return PLAN_MAGIC + json.dumps(plan).encode()

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shape: tuple | None = None
            self.ran_shape: tuple | None = None  # shape of the last enqueue outside a capture
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            env.record("set_input_shape", name, tuple(shape))
            lo, _, hi = self.engine.plan["profile"]
            if name != self.engine.plan["input"] or not lo[0] <= shape[0] <= hi[0] or tuple(shape[1:]) != tuple(hi[1:]):
                return False
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple:
            assert self.shape is not None, "shape queried before set_input_shape"
            return self.shape if name == self.engine.plan["input"] else (self.shape[0], 3)

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            env.record("set_tensor_address", name, ptr)
            self.addresses[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            env.record("execute_async_v3", stream_handle)
            plan, shape = self.engine.plan, self.shape
            capturing = int(stream_handle) in env.capturing
            if env.current_device != self.engine.device:
                self.engine.logger.log(Severity.ERROR, f"engine of device {self.engine.device} enqueued while "
                                                       f"device {env.current_device} is current")
                return False
            if env.last_error and not capturing:  # a pending error from an earlier CUDA call
                self.engine.logger.log(Severity.ERROR, f"CUDA error {env.last_error} before enqueue")
                return False
            if capturing and (env.capture_fault == "enqueue" or self.ran_shape != shape):
                # TensorRT needs one enqueue outside capture after a shape change; a capture fault
                # (e.g. a synchronizing call inside) also invalidates the capture
                env.capturing[int(stream_handle)].append(None)
                return False
            if not capturing:
                self.ran_shape = shape
            src, dst = self.addresses[plan["input"]], self.addresses[plan["output"]]
            w = np.asarray(plan["weights"]["W"], dtype=np.float32)
            b = np.asarray(plan["weights"]["B"], dtype=np.float32)

            in_type, out_type = (np.dtype(m.nptype(self.engine.get_tensor_dtype(n))) for n in self.engine.names)

            def run() -> None:
                # NVIDIA: a graph is valid only for the shapes it was captured with
                assert self.shape == shape, f"graph of shape {shape} replayed after a reshape to {self.shape}"
                count = int(np.prod(shape))
                raw = (ctypes.c_byte * (count * in_type.itemsize)).from_address(src)
                x = np.frombuffer(raw, dtype=in_type).reshape(shape).astype(np.float32)
                y = np.ascontiguousarray((x.mean(axis=(2, 3)) @ w.T + b).astype(out_type))
                ctypes.memmove(dst, y.ctypes.data, y.nbytes)

            env.submit(int(stream_handle), run)
            return True

    class Inspector:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine

        def get_engine_information(self, fmt: Any) -> str:
            env.record("get_engine_information", fmt)
            plan = self.engine.plan
            if plan["verbosity"] != int(m.ProfilingVerbosity.DETAILED):
                return json.dumps({"Layers": [layer["name"] for layer in plan["layers"]], "Bindings": []})
            def tensor(name: str, precision: str) -> dict:
                if env.inspector_fields == "split":
                    return {"Name": name, "Format": "Row major linear", "Datatype": SPLIT_TYPES[precision]}
                return {"Name": name, "Format/Datatype": INSPECTOR_TYPES[precision]}

            layers = [{"Name": layer["name"], "LayerType": layer["type"],
                       "Inputs": [tensor("in", layer["precision"])], "Outputs": [tensor("out", layer["precision"])]}
                      for layer in plan["layers"]]
            return json.dumps({"Layers": layers, "Bindings": [plan["input"], plan["output"]]})

    class Engine:
        def __init__(self, plan: dict, logger: Any) -> None:
            self.plan, self.logger = plan, logger
            self.device = env.current_device  # an engine lives on the device current at deserialization
            self.names = [plan["input"], plan["output"]]

        @property
        def num_io_tensors(self) -> int:
            return 2

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> Any:
            return m.TensorIOMode.INPUT if name == self.plan["input"] else m.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return m.DataType[self.plan.get("dtypes", {}).get(name, "FLOAT")]

        def get_tensor_profile_shape(self, name: str, index: int) -> tuple:
            return tuple(tuple(s) for s in self.plan["profile"])

        def create_execution_context(self) -> Context:
            env.record("create_execution_context")
            return Context(self)

        def create_engine_inspector(self) -> Inspector:
            return Inspector(self)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            env.record("Runtime", env.current_device)
            self.logger = logger
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            env.record("deserialize_cuda_engine", len(data))
            if not bytes(data).startswith(PLAN_MAGIC):
                self.logger.log(Severity.ERROR, "magic tag does not match")
                return None
            try:
                plan = json.loads(bytes(data)[len(PLAN_MAGIC):])
            except ValueError:
                self.logger.log(Severity.ERROR, "corrupt plan")
                return None
            why = plan_runs_on(plan, env.trt_version, env.cc, self.engine_host_code_allowed)
            if why:
                self.logger.log(Severity.ERROR, why)
                return None
            return Engine(plan, self.logger)

    m.Builder, m.OnnxParser, m.Runtime = Builder, OnnxParser, Runtime
    return m


def install(
    monkeypatch: Any,
    trt_version: str = "10.3.0.30",
    gpu_name: str = "NVIDIA H100 80GB HBM3",
    cc: tuple[int, int] = (9, 0),
    device_count: int = 1,
) -> FakeEnv:
    """Put fake `tensorrt` and `cuda.bindings.runtime` into sys.modules (undone by monkeypatch)."""
    env = FakeEnv(trt_version=trt_version, gpu_name=gpu_name, cc=cc, device_count=device_count,
                  inspector_fields="split" if version_tuple(trt_version)[0] >= 11 else "combined")
    env.trt, env.cudart = make_trt(env), make_cudart(env)
    cuda_pkg = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = env.cudart
    cuda_pkg.bindings = bindings
    cuda_pkg.__path__ = []  # a package, so `from cuda.bindings import runtime` resolves
    bindings.__path__ = []
    monkeypatch.setitem(sys.modules, "tensorrt", env.trt)
    monkeypatch.setitem(sys.modules, "cuda", cuda_pkg)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", env.cudart)
    return env
