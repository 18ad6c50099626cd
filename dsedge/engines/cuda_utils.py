"""Thin, checked wrappers over cuda-python's runtime API (torch-free).

TensorRT's own Python samples moved from PyCUDA to `cuda-python`; we do the
same so the TensorRT runner needs neither torch nor PyCUDA. Every cuda-python
call returns a tuple `(err, *results)`; `cuda_call` turns a non-success
error into an `EngineError` naming the call, so a CUDA failure reads as a
message instead of a silently ignored status code.

Only what the TensorRT builder and runner need lives here: device
properties (GPU name, compute capability), pinned host and device buffers,
a stream, and a captured CUDA graph.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from dsedge.errors import EngineError, MissingDependencyError


def import_cudart() -> ModuleType:
    """`cuda.bindings.runtime` (cuda-python >= 12.6) or the older `cuda.cudart`, else a clear error.

    Both imports can fail two ways: ImportError (the package is missing) and
    OSError (the package is there but the CUDA runtime library it wraps does
    not load). Either becomes a `DsedgeError`, from either import, so a broken
    CUDA install never surfaces as a raw traceback.
    """
    try:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[import-not-found,no-redef]
        except ImportError as e:
            raise MissingDependencyError(
                "cuda-python", "tensorrt", "device memory and streams for TensorRT"
            ) from e
        except OSError as e:  # the legacy module is there, the CUDA runtime library is not
            raise _cannot_load(e) from e
    except OSError as e:
        raise _cannot_load(e) from e
    return cudart


def _cannot_load(e: OSError) -> EngineError:
    return EngineError(
        f"cuda-python cannot load the CUDA runtime: {e}", "check the CUDA/driver install; see `dsedge doctor`"
    )


def cuda_call(result: Any, what: str = "CUDA call") -> Any:
    """Check a cuda-python result tuple `(err, *values)`; return the value(s) or raise `EngineError`."""
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if int(err) != 0:  # cudaSuccess == 0 in every CUDA version
        name = getattr(err, "name", str(err))
        raise EngineError(f"{what} failed: {name} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def gpu_slug(name: str) -> str:
    """File-name-safe GPU name: "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3"."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "gpu"


@dataclass(frozen=True)
class DeviceInfo:
    """What a TensorRT engine is tied to: the GPU model and its compute capability."""

    index: int
    name: str
    compute_capability: str  # "9.0"
    total_memory: int

    @property
    def slug(self) -> str:
        return gpu_slug(self.name)


def device_info(device: int = 0, cudart: ModuleType | None = None) -> DeviceInfo:
    """Name and compute capability of CUDA device `device` via `cudaGetDeviceProperties`."""
    rt = cudart or import_cudart()
    count = cuda_call(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if device >= int(count):
        raise EngineError(f"CUDA device {device} does not exist (found {count} device(s))")
    prop = cuda_call(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return DeviceInfo(
        index=device,
        name=str(name).strip(),
        compute_capability=f"{int(prop.major)}.{int(prop.minor)}",
        total_memory=int(getattr(prop, "totalGlobalMem", 0)),
    )


def set_device(device: int, cudart: ModuleType | None = None) -> None:
    """Make CUDA device `device` current for this thread.

    TensorRT builds and deserializes on the *current* device, so this must run
    before `trt.Builder` / `trt.Runtime` are created, not only for metadata.
    """
    rt = cudart or import_cudart()
    cuda_call(rt.cudaSetDevice(int(device)), f"cudaSetDevice({device})")


class PinnedArray:
    """A page-locked host buffer viewed as a NumPy array (needed for async copies and graph capture)."""

    def __init__(self, cudart: ModuleType, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._rt = cudart
        self.dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        self.nbytes = max(count * self.dtype.itemsize, 1)
        self.ptr = int(cuda_call(cudart.cudaMallocHost(self.nbytes), "cudaMallocHost"))
        buf = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(buf, dtype=self.dtype, count=count).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = None  # type: ignore[assignment]
            cuda_call(self._rt.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class DeviceBuffer:
    """A `cudaMalloc` allocation of `nbytes`, freed by `free()`."""

    def __init__(self, cudart: ModuleType, nbytes: int) -> None:
        self._rt = cudart
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(cuda_call(cudart.cudaMalloc(self.nbytes), "cudaMalloc"))

    def free(self) -> None:
        if self.ptr:
            cuda_call(self._rt.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class Stream:
    """A CUDA stream with async host<->device copies."""

    def __init__(self, cudart: ModuleType) -> None:
        self._rt = cudart
        self.handle = cuda_call(cudart.cudaStreamCreate(), "cudaStreamCreate")

    @property
    def ptr(self) -> int:
        """The raw `cudaStream_t` value TensorRT's `execute_async_v3` expects."""
        return int(self.handle)

    def h2d(self, device_ptr: int, host_ptr: int, nbytes: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda_call(self._rt.cudaMemcpyAsync(device_ptr, host_ptr, nbytes, kind, self.handle), "cudaMemcpyAsync H2D")

    def d2h(self, host_ptr: int, device_ptr: int, nbytes: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(self._rt.cudaMemcpyAsync(host_ptr, device_ptr, nbytes, kind, self.handle), "cudaMemcpyAsync D2H")

    def synchronize(self) -> None:
        cuda_call(self._rt.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def begin_capture(self) -> None:
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call(self._rt.cudaStreamBeginCapture(self.handle, mode), "cudaStreamBeginCapture")

    def end_capture(self) -> CudaGraph:
        """End a capture and instantiate its graph; on failure nothing is left behind (see `abort_capture`)."""
        try:
            graph = cuda_call(self._rt.cudaStreamEndCapture(self.handle), "cudaStreamEndCapture")
        except EngineError:
            clear_last_error(self._rt)
            raise
        return CudaGraph(self._rt, graph)

    def abort_capture(self) -> None:
        """End a capture that went wrong and throw its graph away, never raising.

        After a failed capture the stream stays in capture mode until
        `cudaStreamEndCapture`; a later non-captured launch on it would fail too.
        The end call reports the capture's own error (e.g. invalidated), which is
        not news here, and any partial graph it returns is destroyed.
        """
        try:
            result = self._rt.cudaStreamEndCapture(self.handle)
        except Exception:  # noqa: BLE001 - best effort cleanup after the real error
            result = None
        graph = result[1] if isinstance(result, tuple) and len(result) > 1 else None
        if graph is not None:
            try:
                self._rt.cudaGraphDestroy(graph)
            except Exception:  # noqa: BLE001
                pass
        clear_last_error(self._rt)

    def destroy(self) -> None:
        if self.handle is not None:
            cuda_call(self._rt.cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None


def clear_last_error(cudart: ModuleType) -> None:
    """Reset the CUDA runtime's last error after a failure we handled (never raises).

    A failed capture leaves its error (e.g. cudaErrorStreamCaptureInvalidated)
    as the runtime's last error, and the next plain `execute_async_v3` may then
    report it as its own failure. trtexec calls `cudaGetLastError()` right after
    a failed capture for this reason (samples/common/sampleDevice.h,
    TrtCudaGraph::endCaptureOnError); so do we.
    """
    get_last_error = getattr(cudart, "cudaGetLastError", None)
    if get_last_error is None:
        return
    try:
        get_last_error()
    except Exception:  # noqa: BLE001 - cleanup only
        pass


class CudaGraph:
    """A captured and instantiated CUDA graph: replays copies + TensorRT kernels with one launch."""

    def __init__(self, cudart: ModuleType, graph: Any) -> None:
        self._rt = cudart
        self.graph = graph
        # cudaGraphInstantiateWithFlags(graph, flags) has the same signature in CUDA 11.4+ and 12/13,
        # unlike cudaGraphInstantiate, whose arguments changed in CUDA 12.
        try:
            self.exec = cuda_call(cudart.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags")
        except EngineError:
            cudart.cudaGraphDestroy(graph)  # do not leak the captured graph
            clear_last_error(cudart)
            raise

    def launch(self, stream: Stream) -> None:
        cuda_call(self._rt.cudaGraphLaunch(self.exec, stream.handle), "cudaGraphLaunch")

    def destroy(self) -> None:
        if self.exec is not None:
            cuda_call(self._rt.cudaGraphExecDestroy(self.exec), "cudaGraphExecDestroy")
            cuda_call(self._rt.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
            self.exec = self.graph = None
