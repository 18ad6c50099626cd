"""cuda_utils: every way cuda-python can fail to load becomes a DsedgeError; capture cleanup never raises."""

from __future__ import annotations

import builtins
import sys

import pytest
from fake_tensorrt import install

from dsedge.engines import cuda_utils
from dsedge.engines.cuda_utils import Stream, cuda_call, import_cudart, set_device
from dsedge.errors import EngineError, MissingDependencyError


def _imports_failing(monkeypatch, failures: dict[str, BaseException]) -> None:
    """Make `from cuda.bindings import runtime` / `from cuda import cudart` raise the given errors."""
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    real_import = builtins.__import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: ANN001, ANN202
        key = f"{name}:{','.join(fromlist or ())}"
        if key in failures:
            raise failures[key]
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_oserror_from_the_legacy_cudart_fallback_is_an_engine_error(monkeypatch) -> None:
    _imports_failing(monkeypatch, {"cuda.bindings:runtime": ImportError("no cuda.bindings"),
                                   "cuda:cudart": OSError("libcudart.so.12: cannot open shared object file")})
    with pytest.raises(EngineError, match="cannot load the CUDA runtime: libcudart") as e:
        import_cudart()
    assert not isinstance(e.value, MissingDependencyError) and "dsedge doctor" in e.value.hint


def test_oserror_from_cuda_bindings_and_missing_package(monkeypatch) -> None:
    _imports_failing(monkeypatch, {"cuda.bindings:runtime": OSError("libcudart missing")})
    with pytest.raises(EngineError, match="cannot load the CUDA runtime"):
        import_cudart()
    _imports_failing(monkeypatch, {"cuda.bindings:runtime": ImportError("x"), "cuda:cudart": ImportError("y")})
    with pytest.raises(MissingDependencyError, match="cuda-python"):
        import_cudart()


def test_set_device_checks_the_status(monkeypatch) -> None:
    env = install(monkeypatch, device_count=2)
    set_device(1, env.cudart)
    assert env.current_device == 1
    with pytest.raises(EngineError, match=r"cudaSetDevice\(5\) failed: cudaErrorInvalidDevice \(101\)"):
        set_device(5, env.cudart)


def test_abort_capture_ends_capture_and_destroys_the_partial_graph(monkeypatch) -> None:
    env = install(monkeypatch)
    stream = Stream(env.cudart)
    stream.begin_capture()
    stream.abort_capture()  # a valid capture ended for nothing: its graph is destroyed
    assert env.capturing == {} and env.graphs == set()
    stream.begin_capture()
    with pytest.raises(EngineError, match="cudaErrorStreamCaptureUnsupported"):
        cuda_call(env.cudart.cudaStreamSynchronize(stream.handle))  # illegal during capture: invalidates it
    stream.abort_capture()  # the end call reports "invalidated"; abort must not raise
    assert env.capturing == {} and env.graphs == set()
    stream.destroy()
    assert cuda_utils.gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_a_failed_capture_clears_the_runtimes_last_error(monkeypatch) -> None:
    """trtexec calls cudaGetLastError() after a failed capture; a stale error would fail the next enqueue."""
    env = install(monkeypatch)
    stream = Stream(env.cudart)
    stream.begin_capture()
    env.cudart.cudaStreamSynchronize(stream.handle)  # invalidates the capture
    stream.abort_capture()
    assert env.last_error == 0 and "cudaGetLastError" in env.names()
    env.capture_fault = "end"
    stream.begin_capture()
    with pytest.raises(EngineError, match="cudaErrorStreamCaptureInvalidated"):
        stream.end_capture()
    assert env.last_error == 0  # end_capture's own failure is cleared too
    env.capture_fault = "instantiate"
    stream.begin_capture()
    with pytest.raises(EngineError, match="cudaGraphInstantiateWithFlags"):
        stream.end_capture()
    assert env.last_error == 0 and env.graphs == set()
    stream.destroy()
