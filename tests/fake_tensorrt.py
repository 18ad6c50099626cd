"""Fake `tensorrt` (10.x or 11.x shape) and `cuda.bindings.runtime` modules that record every call.

TensorRT cannot be installed on our machines, so the builder and runner are
checked against these fakes: they expose the documented API surface (names,
signatures, return conventions such as cuda-python's `(err, value)` tuples)
and record each call in `FakeEnv.calls`, so tests can assert the exact
sequence. The 11.x fake has no `BuilderFlag.FP16/INT8` (removed in 11.0): any
attempt to use them raises AttributeError, as the real module would.

The fakes also *work*: the "parser" reads the real ONNX file (the tiny
GAP -> Gemm test model), the "plan" is JSON with a magic header, "device
memory" is host memory addressed through ctypes, copies really move bytes,
CUDA-graph capture defers work until launch, and `execute_async_v3` computes
the tiny model from the bytes at the bound addresses. So data-flow mistakes
(wrong address, wrong byte count, missing copy) show up as wrong numbers.
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


@dataclass
class FakeEnv:
    """Shared state of one fake tensorrt + cudart pair."""

    trt_version: str
    gpu_name: str
    cc: tuple[int, int]
    calls: list[tuple[str, Any]] = field(default_factory=list)
    memory: dict[int, Any] = field(default_factory=dict)  # address -> ctypes buffer
    capturing: dict[int, list] = field(default_factory=dict)  # stream id -> deferred ops
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


class _Stream:
    def __init__(self, ident: int) -> None:
        self.ident = ident

    def __int__(self) -> int:
        return self.ident


def make_cudart(env: FakeEnv) -> types.ModuleType:
    m = types.ModuleType("cuda.bindings.runtime")
    ok = 0

    class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

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
            return impl(*args)

        setattr(m, name, wrapper)

    fn("cudaGetDeviceCount", lambda: (ok, 1))
    fn("cudaGetDeviceProperties", lambda d: (ok, _Props(env)))
    fn("cudaSetDevice", lambda d: (ok,))
    fn("cudaRuntimeGetVersion", lambda: (ok, 12080))
    fn("cudaDriverGetVersion", lambda: (ok, 12080))
    fn("cudaMalloc", lambda n: (ok, env.alloc(n)))
    fn("cudaMallocHost", lambda n: (ok, env.alloc(n)))
    fn("cudaFree", lambda p: (ok,) if env.memory.pop(p, None) is not None else (cudaError_t(2),))
    fn("cudaFreeHost", lambda p: (ok,) if env.memory.pop(p, None) is not None else (cudaError_t(2),))
    fn("cudaStreamCreate", lambda: (ok, _Stream(next(counter))))
    fn("cudaStreamDestroy", lambda s: (ok,))
    fn("cudaStreamSynchronize", lambda s: (ok,))

    def memcpy(dst: int, src: int, n: int, kind: Any, stream: Any) -> tuple:
        assert int(dst) in env.memory or int(src) in env.memory, "copy touches no allocation"
        env.submit(int(stream), lambda: ctypes.memmove(int(dst), int(src), int(n)))
        return (ok,)

    fn("cudaMemcpyAsync", memcpy)

    def begin(stream: Any, mode: Any) -> tuple:
        env.capturing[int(stream)] = []
        return (ok,)

    def end(stream: Any) -> tuple:
        return (ok, env.capturing.pop(int(stream)))

    fn("cudaStreamBeginCapture", begin)
    fn("cudaStreamEndCapture", end)
    fn("cudaGraphInstantiateWithFlags", lambda g, flags: (ok, list(g)))

    def launch(graph_exec: list, stream: Any) -> tuple:
        for op in graph_exec:
            op()
        return (ok,)

    fn("cudaGraphLaunch", launch)
    fn("cudaGraphExecDestroy", lambda g: (ok,))
    fn("cudaGraphDestroy", lambda g: (ok,))
    return m


# ---------------------------------------------------------------------------------------------
# tensorrt


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

    flags = {"STRONGLY_TYPED": 1} if major >= 11 else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    m.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flags)
    bflags = ["GPU_FALLBACK", "REFIT", "DEBUG", "SPARSE_WEIGHTS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"]
    if major < 11:
        bflags += ["FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS"]
    m.BuilderFlag = enum.IntEnum("BuilderFlag", bflags)
    m.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    m.TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    m.DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32"])
    m.ILogger, m.Logger = ILogger, Logger

    def nptype(dt: Any) -> type:
        return {m.DataType.FLOAT: np.float32, m.DataType.HALF: np.float16}[dt]

    m.nptype = nptype

    class Tensor:
        def __init__(self, name: str, shape: tuple) -> None:
            self.name, self.shape = name, shape

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Tensor] = []
            self.model: dict | None = None

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
            self.network.model = {"input": g.input[0].name, "output": g.output[0].name, "weights": weights}
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
            self.entries = int(data[len(CACHE_MAGIC):] or 0) if data else 0

        def serialize(self) -> bytes:
            return CACHE_MAGIC + str(self.entries).encode()

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            env.record("profile.set_shape", name, tuple(lo), tuple(opt), tuple(hi))
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def __init__(self) -> None:
            self.flags: set = set()
            self.cache: TimingCache | None = None
            self.profiles: list[Profile] = []
            self._level = 3

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

        def create_timing_cache(self, data: bytes) -> TimingCache:
            env.record("create_timing_cache", bytes(data))
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            env.record("set_timing_cache", cache.entries, ignore_mismatch)
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
            env.record("Builder")

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
            config.cache.entries += 1  # a build adds timings to the cache
            name = network.model["input"]
            lo, opt, hi = config.profiles[0].shapes[name]
            plan = {**network.model, "profile": [lo, opt, hi], "version": env.trt_version}
            return PLAN_MAGIC + json.dumps(plan).encode()

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shape: tuple | None = None
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
            src, dst = self.addresses[plan["input"]], self.addresses[plan["output"]]
            w = np.asarray(plan["weights"]["W"], dtype=np.float32)
            b = np.asarray(plan["weights"]["B"], dtype=np.float32)

            def run() -> None:
                count = int(np.prod(shape))
                x = np.frombuffer((ctypes.c_float * count).from_address(src), dtype=np.float32).reshape(shape)
                y = (x.mean(axis=(2, 3)) @ w.T + b).astype(np.float32)
                ctypes.memmove(dst, y.ctypes.data, y.nbytes)

            env.submit(int(stream_handle), run)
            return True

    class Engine:
        def __init__(self, plan: dict) -> None:
            self.plan = plan
            self.names = [plan["input"], plan["output"]]

        @property
        def num_io_tensors(self) -> int:
            return 2

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> Any:
            return m.TensorIOMode.INPUT if name == self.plan["input"] else m.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return m.DataType.FLOAT

        def get_tensor_profile_shape(self, name: str, index: int) -> tuple:
            return tuple(tuple(s) for s in self.plan["profile"])

        def create_execution_context(self) -> Context:
            env.record("create_execution_context")
            return Context(self)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            env.record("Runtime")
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            env.record("deserialize_cuda_engine", len(data))
            if not bytes(data).startswith(PLAN_MAGIC):
                return None
            try:
                return Engine(json.loads(bytes(data)[len(PLAN_MAGIC):]))
            except ValueError:
                return None

    m.Builder, m.OnnxParser, m.Runtime = Builder, OnnxParser, Runtime
    return m


def install(
    monkeypatch: Any,
    trt_version: str = "10.3.0.30",
    gpu_name: str = "NVIDIA H100 80GB HBM3",
    cc: tuple[int, int] = (9, 0),
) -> FakeEnv:
    """Put fake `tensorrt` and `cuda.bindings.runtime` into sys.modules (undone by monkeypatch)."""
    env = FakeEnv(trt_version=trt_version, gpu_name=gpu_name, cc=cc)
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
