"""TrtRunner: contract tests over fake TensorRT/cuda-python, plus real-TensorRT tests where it imports.

The fakes compute the tiny model from the bytes at the bound device
addresses, so the numbers coming back prove the buffer plumbing (pinned
copies, addresses, byte counts, chunking, CUDA-graph replay), and the call log
proves the documented sequence set_input_shape -> set_tensor_address ->
execute_async_v3 on our stream.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from fake_tensorrt import install
from tiny_bundle import make_tiny_bundle, reference_logits

from dsedge.bundle import load_bundle
from dsedge.engines.trt_build import TensorRTWarning, build_engine
from dsedge.engines.trt_runner import TrtRunner
from dsedge.errors import BundleError, EngineError


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "bundle")


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 32, 32)).astype(np.float32)


def test_runner_call_sequence_and_numbers(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp16", max_batch=8, opt_batch=4)
    env.calls.clear()
    with TrtRunner.from_bundle(load_bundle(bundle), "fp16") as runner:
        assert runner.max_batch == 8 and runner.info.backend == "tensorrt"
        assert runner.info.precision == "fp16" and runner.info.device == "NVIDIA H100 80GB HBM3"
        setup = env.names()
        assert setup.index("deserialize_cuda_engine") < setup.index("create_execution_context")
        addrs = env.find("set_tensor_address")
        assert sorted(a[0] for a in addrs) == ["input", "logits"]
        env.calls.clear()
        x = _batch(5)
        out = runner.infer(x)
        np.testing.assert_allclose(out, reference_logits(x), atol=1e-3)  # fp16 weights: rounded
        seq = [n for n in env.names() if n in ("set_input_shape", "cudaMemcpyAsync", "execute_async_v3", "cudaStreamSynchronize")]
        assert seq == ["set_input_shape", "cudaMemcpyAsync", "execute_async_v3", "cudaMemcpyAsync", "cudaStreamSynchronize"]
        assert env.find("set_input_shape") == [("input", (5, 3, 32, 32))]
        (h2d,), (d2h,) = [env.find("cudaMemcpyAsync")[0]], [env.find("cudaMemcpyAsync")[1]]
        assert h2d[2] == 5 * 3 * 32 * 32 * 4 and d2h[2] == 5 * 3 * 4  # only the live rows are copied
        stream = env.find("execute_async_v3")[0][0]
        assert h2d[4] is d2h[4] and int(h2d[4]) == stream  # everything on the runner's stream
    assert env.memory == {}  # close() freed every pinned and device buffer


def test_batches_above_profile_max_are_split_or_refused(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "11.4.0")
    build_engine(bundle, "fp32", min_batch=1, opt_batch=2, max_batch=4)
    x = _batch(10, seed=1)
    with TrtRunner.from_bundle(load_bundle(bundle), "fp32") as runner:
        env.calls.clear()
        np.testing.assert_allclose(runner.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
        assert [a[1][0] for a in env.find("set_input_shape")] == [4, 4, 2]
    with TrtRunner.from_bundle(load_bundle(bundle), "fp32", split=False) as runner:
        with pytest.raises(EngineError, match="exceeds the engine's profile maximum 4"):
            runner.infer(x)
        with pytest.raises(EngineError, match="takes N x"):
            runner.infer(np.zeros((1, 3, 16, 16), np.float32))


def test_batches_below_profile_min_are_padded(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp32", min_batch=2, opt_batch=2, max_batch=4)
    x = _batch(1, seed=2)
    with TrtRunner.from_bundle(load_bundle(bundle), "fp32") as runner:
        out = runner.infer(x)
    assert out.shape == (1, 3)
    np.testing.assert_allclose(out, reference_logits(x), rtol=1e-5, atol=1e-5)


def test_cuda_graph_per_batch_size_in_its_own_context_is_not_recaptured_on_row_switches(monkeypatch,
                                                                                       bundle: Path) -> None:
    """Issue 25 item 5: the bench interleaves batch 1, 8 and 32; one shared context re-captured at every switch."""
    env = install(monkeypatch, "11.4.0")
    build_engine(bundle, "fp16", max_batch=32)
    with TrtRunner.from_bundle(load_bundle(bundle), "fp16", cuda_graph=True) as runner:
        env.calls.clear()
        for _round in range(3):  # the bench's interleaved rounds
            for n in (1, 8, 32):
                x = _batch(n, seed=n + _round)
                np.testing.assert_allclose(runner.infer(x), reference_logits(x), atol=1e-3)
        assert len(env.find("cudaStreamBeginCapture")) == 3  # once per batch size, never again
        assert len(env.find("create_execution_context")) == 3  # one context per batch size
        assert len(env.find("cudaGraphLaunch")) == 9
        assert env.find("cudaGraphExecDestroy") == []  # nothing thrown away between rows
        # one uncaptured warm-up run before each capture, as TensorRT requires after a shape change
        names = env.names()
        assert names.index("execute_async_v3") < names.index("cudaStreamBeginCapture")
        # each context got its shape once, at creation; replays never reshape it
        assert [a[1][0] for a in env.find("set_input_shape")] == [1, 8, 32]
        assert runner.info.extra["cuda_graph"] is True and runner.info.extra["cuda_graph_error"] is None
        assert runner.info.extra["cuda_graph_batches"] == [1, 8, 32]
        # more batch sizes than MAX_GRAPH_SHAPES: the least recently used context and its graph go
        for n in (2, 3):
            runner.infer(_batch(n))
        assert runner.info.extra["cuda_graph_batches"] == [2, 3, 8, 32]
        assert len(env.find("cudaGraphExecDestroy")) == 1
    assert env.graphs == set() and env.capturing == {}  # nothing leaked, no stream left capturing


@pytest.mark.parametrize("fault", ["enqueue", "end", "instantiate"])
def test_failed_capture_is_ended_discarded_and_runs_without_graph(monkeypatch, bundle: Path, fault: str) -> None:
    env = install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp32", max_batch=8)
    env.capture_fault = fault
    with TrtRunner.from_bundle(load_bundle(bundle), "fp32", cuda_graph=True) as runner:
        x = _batch(4, seed=11)
        with pytest.warns(TensorRTWarning, match="CUDA graph capture failed"):
            out = runner.infer(x)
        np.testing.assert_allclose(out, reference_logits(x), rtol=1e-5, atol=1e-5)
        assert env.capturing == {}  # the capture was ended, so the stream works again
        assert env.graphs == set()  # the broken graph was destroyed
        assert env.last_error == 0  # cleared with cudaGetLastError, as trtexec does: no stale error
        assert runner.info.extra["cuda_graph"] is False and runner.info.extra["cuda_graph_error"]
        env.calls.clear()
        x = _batch(5, seed=12)
        np.testing.assert_allclose(runner.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
        assert env.find("cudaStreamBeginCapture") == [] and len(env.find("execute_async_v3")) == 1


def test_runner_sets_its_device_before_deserializing(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "10.3.0.30", device_count=2)
    build_engine(bundle, "fp32", device=1)
    env.calls.clear()
    with TrtRunner.from_bundle(load_bundle(bundle), "fp32", device=1):
        names = env.names()
        assert env.find("cudaSetDevice") == [(1,)] and names.index("cudaSetDevice") < names.index("Runtime")
        assert env.find("Runtime") == [(1,)]


def test_two_runners_on_two_gpus_in_one_thread_each_run_on_their_own(monkeypatch, bundle: Path) -> None:
    """Issue 25 item 8: the device was made current only in __init__, so runner 0 launched on device 1."""
    env = install(monkeypatch, "10.3.0.30", device_count=2)
    build_engine(bundle, "fp32", device=0)
    with TrtRunner.from_bundle(load_bundle(bundle), "fp32", device=0) as r0, \
            TrtRunner.from_bundle(load_bundle(bundle), "fp32", device=1) as r1:
        assert env.current_device == 1  # the last constructor left device 1 current
        for graph in (False, True):
            r0.use_graph = r1.use_graph = graph
            for runner in (r0, r1, r0, r1):
                x = _batch(3, seed=runner.device)
                np.testing.assert_allclose(runner.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
                assert env.current_device == runner.device
        r0.run_resident(3)
        assert env.current_device == 0
    assert env.memory == {}


def _fp16_io_model() -> onnx.ModelProto:
    """The tiny model with float16 inputs and outputs (what an FP16-I/O export would give)."""
    from onnx import TensorProto, helper, numpy_helper
    from tiny_bundle import BIAS, WEIGHT

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1)],
        "tiny16",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT16, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT16, ["batch", 3])],
        initializer=[numpy_helper.from_array(WEIGHT.astype(np.float16), "W"),
                     numpy_helper.from_array(BIAS.astype(np.float16), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_fp16_engine_io_is_converted_and_other_io_types_are_refused(monkeypatch, bundle: Path) -> None:
    """The fake engine's I/O used to be FLOAT always, so FP16 / INT8 I/O in the runner was never exercised."""
    onnx.save(_fp16_io_model(), str(bundle / "model.fp16.onnx"))
    b = load_bundle(bundle, verify=False)
    b.add_artifact("model.fp16.onnx", "onnx", "fp16", simam="function")
    b.save()
    env = install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp16", max_batch=8)
    for graph in (False, True):
        with TrtRunner.from_bundle(load_bundle(bundle), "fp16", cuda_graph=graph) as runner:
            assert runner.dtypes == {"input": np.float16, "logits": np.float16}
            x = _batch(5, seed=21)
            out = runner.infer(x)
            assert out.dtype == np.float32
            np.testing.assert_allclose(out, reference_logits(x), atol=2e-2)  # fp16 input, weights and output
            d2h = env.find("cudaMemcpyAsync")[-1]
            assert d2h[2] == 5 * 3 * 2  # half-precision bytes copied back, not float32's
    for dtype in ("INT8", "BF16"):  # INT8 I/O would get raw float bytes; BF16 has no NumPy type at all
        io_type = env.trt.DataType[dtype]
        orig = env.trt.Runtime.deserialize_cuda_engine

        def deserialize(self, data, _orig=orig, _type=io_type):  # noqa: ANN001, ANN202
            engine = _orig(self, data)
            engine.get_tensor_dtype = lambda name: _type
            return engine

        with monkeypatch.context() as m:
            m.setattr(env.trt.Runtime, "deserialize_cuda_engine", deserialize)
            with pytest.raises(EngineError, match=f"I/O tensor 'input' is {dtype}; dsedge feeds and reads float32"):
                TrtRunner.from_bundle(load_bundle(bundle), "fp16")


def test_run_resident_skips_copies(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp32", max_batch=8)
    for graph in (False, True):
        with TrtRunner.from_bundle(bundle, "fp32", cuda_graph=graph) as runner:  # a path works too
            x = _batch(4, seed=5)
            runner.infer(x)
            env.calls.clear()
            runner.run_resident(4)
            runner.run_resident(4)
            assert env.find("cudaMemcpyAsync") == []
            assert len(env.find("execute_async_v3")) == 2  # graph: warm-up + capture; else: two runs
            assert len(env.find("cudaGraphLaunch")) == (2 if graph else 0)
            np.testing.assert_allclose(runner.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
            with pytest.raises(EngineError, match="outside the engine's profile"):
                runner.run_resident(9)


def test_refuses_engine_from_another_tensorrt_release(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp16")
    install(monkeypatch, "11.4.0")
    with pytest.raises(EngineError, match=r"built with TensorRT 10\.3\.0\.30 and this is TensorRT 11\.4\.0"):
        TrtRunner.from_bundle(load_bundle(bundle), "fp16")
    install(monkeypatch, "10.8.0")  # same major, other minor: refused without version compatibility
    with pytest.raises(EngineError, match="this is TensorRT 10.8.0"):
        TrtRunner.from_bundle(load_bundle(bundle), "fp16")
    install(monkeypatch, "10.3.1.4")  # same major.minor, other patch: TensorRT refuses it too
    with pytest.raises(EngineError, match=r"this is TensorRT 10\.3\.1\.4 .*patch version included"):
        TrtRunner.from_bundle(load_bundle(bundle), "fp16")
    install(monkeypatch, "10.3.0.30")  # the release that built it
    with TrtRunner.from_bundle(load_bundle(bundle), "fp16") as runner:
        assert runner.max_batch == 32


def test_version_compatible_engine_runs_on_newer_releases_and_on_11(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp32", version_compatible=True)
    for version in ("10.3.1", "10.8.0", "11.0.0", "11.4.0.106"):  # NVIDIA: 10.x VC plans run on 11.x
        install(monkeypatch, version)
        with TrtRunner.from_bundle(load_bundle(bundle), "fp32") as runner:
            assert runner.runtime.engine_host_code_allowed is True  # the plan's lean runtime is host code
            x = _batch(2, seed=6)
            np.testing.assert_allclose(runner.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
    for version in ("10.1.0", "10.3.0.29", "12.0.0"):
        install(monkeypatch, version)
        with pytest.raises(EngineError, match="version-compatible engine"):
            TrtRunner.from_bundle(load_bundle(bundle), "fp32")


def test_from_bundle_tries_the_next_matching_engine(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30", gpu_name="NVIDIA H100 PCIe")
    pcie = build_engine(bundle, "fp16")
    install(monkeypatch, "10.3.0.30")
    hbm = build_engine(bundle, "fp16")
    # the PCIe plan (preferred on a PCIe card) is damaged in a way its manifest hash still covers
    pcie.write_bytes(b"\x00garbage")
    b = load_bundle(bundle, verify=False)
    b.add_artifact(pcie.name, "tensorrt", "fp16", **{k: v for k, v in b.artifacts[pcie.name].items()
                                                     if k not in ("kind", "precision", "sha256", "bytes")})
    b.save()
    env = install(monkeypatch, "10.3.0.30", gpu_name="NVIDIA H100 PCIe")
    with TrtRunner.from_bundle(load_bundle(bundle), "fp16", allow_other_gpu=True) as runner:
        assert runner.path == hbm
    assert len(env.find("deserialize_cuda_engine")) == 2  # the PCIe plan first, then the next match
    with pytest.raises(EngineError, match=f"{pcie.name}: TensorRT cannot deserialize"):
        TrtRunner.from_bundle(load_bundle(bundle), "fp16")  # without allow_other_gpu only the broken one matches


def test_from_bundle_picks_the_engine_of_the_running_tensorrt(monkeypatch, bundle: Path) -> None:
    """Issue 25 item 1: engines of two TensorRT releases on one GPU model; each runtime gets its own."""
    install(monkeypatch, "10.3.0.30")
    jetpack = build_engine(bundle, "fp16", max_batch=8)
    install(monkeypatch, "10.13.3.9")
    server = build_engine(bundle, "fp16", max_batch=16)
    for version, plan, max_batch in (("10.3.0.30", jetpack, 8), ("10.13.3.9", server, 16)):
        install(monkeypatch, version)
        with TrtRunner.from_bundle(load_bundle(bundle), "fp16") as runner:
            assert runner.path == plan and runner.max_batch == max_batch
    install(monkeypatch, "10.8.0")
    with pytest.raises(EngineError) as e:
        TrtRunner.from_bundle(load_bundle(bundle), "fp16")
    assert "trt10.3.0.30.plan: it was built with TensorRT 10.3.0.30" in e.value.message
    assert "trt10.13.3.9.plan: it was built with TensorRT 10.13.3.9" in e.value.message


def test_refuses_engine_for_another_gpu(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp16")
    install(monkeypatch, "10.3.0.30", gpu_name="NVIDIA L4", cc=(8, 9))
    with pytest.raises(EngineError, match=r"compute capability 9\.0 .*is 8\.9") as e:
        TrtRunner.from_bundle(load_bundle(bundle), "fp16")
    assert "dsedge build" in e.value.hint
    install(monkeypatch, "10.3.0.30", gpu_name="NVIDIA H100 PCIe", cc=(9, 0))
    with pytest.raises(EngineError, match="built on a NVIDIA H100 80GB HBM3"):
        TrtRunner.from_bundle(load_bundle(bundle), "fp16")
    with TrtRunner.from_bundle(load_bundle(bundle), "fp16", allow_other_gpu=True) as runner:
        assert runner.max_batch == 32


def test_corrupt_engine_is_refused(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    plan = build_engine(bundle, "fp16")
    plan.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(BundleError, match="does not match its manifest sha256"):
        load_bundle(bundle)  # a damaged file is caught by the manifest hash first
    b = load_bundle(bundle, verify=False)
    b.add_artifact(plan.name, "tensorrt", "fp16", **{k: v for k, v in b.artifacts[plan.name].items()
                                                      if k not in ("kind", "precision", "sha256", "bytes")})
    b.save()  # hash matches now: TensorRT itself must refuse the plan
    with pytest.raises(EngineError, match="cannot deserialize"):
        TrtRunner.from_bundle(load_bundle(bundle), "fp16")


def test_from_bundle_without_engine(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    with pytest.raises(BundleError, match="no TensorRT engine for int8"):
        TrtRunner.from_bundle(load_bundle(bundle), "int8")


# ---------------------------------------------------------------------------------------------
# Real TensorRT: build and run an engine, compare with ONNX Runtime. Skipped where tensorrt is missing.

_HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.tensorrt
@pytest.mark.skipif(not _HAVE_TRT, reason="tensorrt is not installed")
# strict FP32 (TF32 cleared) matches ONNX Runtime to float32 rounding; TF32 rounds convolution/GEMM inputs
# to 10-bit mantissas (~5e-4 relative per product); FP16 to 11-bit mantissas plus FP16 accumulation
@pytest.mark.parametrize("precision,tf32,tol", [("fp32", False, 1e-4), ("fp32", True, 5e-3), ("fp16", False, 2e-2)])
def test_real_tensorrt_matches_onnxruntime(bundle: Path, precision: str, tf32: bool, tol: float) -> None:
    from dsedge.engines.ort_runner import OrtRunner

    plan = build_engine(bundle, precision, min_batch=1, opt_batch=4, max_batch=8, workspace_gb=1, opt_level=1,
                        tf32=tf32)
    if precision == "fp32":
        assert load_bundle(bundle).artifacts[plan.name]["tf32"] is tf32
    x = _batch(11, seed=3)
    onnx_name = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}[precision]
    ref = OrtRunner(bundle / onnx_name, precision, providers="CPUExecutionProvider").infer(x)
    for graph in (False, True):
        with TrtRunner.from_bundle(load_bundle(bundle), precision, cuda_graph=graph) as runner:
            out = runner.infer(x)  # 11 > max 8: also exercises splitting on the real runtime
            runner.run_resident(8)
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    assert plan.is_file()


@pytest.mark.tensorrt
@pytest.mark.slow
@pytest.mark.skipif(not _HAVE_TRT, reason="tensorrt is not installed")
def test_real_tensorrt_ds_resnet50_matches_onnxruntime(tmp_path: Path) -> None:
    from dsedge.engines.ort_runner import OrtRunner
    from dsedge.export import export_bundle

    bundle = export_bundle(None, tmp_path / "ds", model_name="ds_resnet50", random_init=True, image_size=64,
                           parity_images=2)
    build_engine(bundle, "fp16", min_batch=1, opt_batch=2, max_batch=4, opt_level=1)
    x = _batch(4, seed=4)[:, :, :32, :32].repeat(2, axis=2).repeat(2, axis=3)
    ref = OrtRunner(Path(bundle) / "model.onnx", "fp32", providers="CPUExecutionProvider").infer(x)
    with TrtRunner.from_bundle(load_bundle(bundle), "fp16") as runner:
        out = runner.infer(x)
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.75
    np.testing.assert_allclose(out, ref, atol=0.1 * float(np.abs(ref).max()) + 1e-3)


def test_fake_cudart_matches_the_real_bindings(monkeypatch) -> None:
    """Every cuda-python function the fake provides (and the runner calls) exists with the same arity."""
    import inspect
    import sys

    real = None
    saved = {k: sys.modules.get(k) for k in ("cuda", "cuda.bindings", "cuda.bindings.runtime")}
    try:
        import cuda.bindings.runtime as real  # type: ignore[import-not-found,no-redef]
    except ImportError:
        pytest.skip("cuda-python is not installed")
    env = install(monkeypatch)
    assert real is not env.cudart and all(v is not env.cudart for v in saved.values())
    assert len(env.cudart.IMPLS) >= 19
    for name, impl in env.cudart.IMPLS.items():
        assert hasattr(real, name), f"cuda.bindings.runtime has no {name}"
        head = getattr(real, name).__doc__.splitlines()[0]  # e.g. "cudaMemcpyAsync(dst, src, ...)"
        real_arity = len([a for a in head[head.index("(") + 1 : head.rindex(")")].split(",") if a.strip()])
        assert len(inspect.signature(impl).parameters) == real_arity, name
