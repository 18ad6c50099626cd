"""Contract tests of `build_engine` against fake TensorRT 10.x and 11.x modules (tests/fake_tensorrt.py).

They pin the builder calls NVIDIA documents for each major version: weak typing
plus the FP16 flag on 10.x, strongly typed networks and no precision flags on
11.x, the optimization profile, the workspace limit, the timing cache round
trip, atomic writes and the manifest entry the runner relies on.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
from fake_tensorrt import CACHE_MAGIC, PLAN_MAGIC, install
from tiny_bundle import make_tiny_bundle

from dsedge.engines import trt_build
from dsedge.engines.trt_build import build_engine
from dsedge.errors import BundleError, EngineError, MissingDependencyError
from dsedge.runtime.bundle import load_bundle
from dsedge.utils.io import sha256_file

H100 = "nvidia-h100-80gb-hbm3"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "bundle")


def _add_int8(bundle: Path) -> None:
    """Register a stand-in `model.int8.onnx` (the tiny fp32 graph) so int8 builds find their ONNX."""
    shutil.copy(bundle / "model.onnx", bundle / "model.int8.onnx")
    b = load_bundle(bundle)
    b.add_artifact("model.int8.onnx", "onnx", "int8", simam="function")
    b.save()


def test_trt10_fp16_uses_fp16_flag_on_weakly_typed_network(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "10.3.0.30")
    plan = build_engine(bundle, "fp16", min_batch=1, opt_batch=4, max_batch=16, workspace_gb=2, opt_level=4)

    assert plan == bundle / f"model.fp16.{H100}.plan"
    assert plan.read_bytes().startswith(PLAN_MAGIC)
    assert env.find("create_network") == [(0,)]
    assert env.find("set_flag") == [("FP16",)]
    assert env.find("parse_from_file") == [(str(bundle / "model.fp16.onnx"),)]
    assert env.find("profile.set_shape") == [("input", (1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))]
    assert env.find("set_memory_pool_limit") == [(env.trt.MemoryPoolType.WORKSPACE, 2 << 30)]
    assert env.find("builder_optimization_level") == [(4,)]
    # order: parse before build, profile and timing cache attached before build, cache read back after
    names = env.names()
    assert names.index("parse_from_file") < names.index("add_optimization_profile") < names.index("build_serialized_network")
    assert names.index("set_timing_cache") < names.index("build_serialized_network") < names.index("get_timing_cache")

    entry = load_bundle(bundle).artifacts[plan.name]  # load_bundle verifies every sha256
    assert entry["kind"] == "tensorrt" and entry["precision"] == "fp16"
    assert entry["tensorrt_version"] == "10.3.0.30" and entry["tensorrt_major_minor"] == "10.3"
    assert entry["gpu"] == "NVIDIA H100 80GB HBM3" and entry["compute_capability"] == "9.0"
    assert entry["profile"] == {"input": "input", "min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [16, 3, 32, 32]}
    assert entry["sha256"] == sha256_file(plan)
    assert entry["onnx"] == "model.fp16.onnx" and entry["strongly_typed"] is False
    assert entry["builder_flags"] == ["FP16"] and entry["version_compatible"] is False


def test_trt11_is_strongly_typed_without_precision_flags(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "11.4.0.106")
    assert not hasattr(env.trt.BuilderFlag, "FP16")  # the fake mirrors the 11.x removal
    plan = build_engine(bundle, "fp16")
    strongly = 1 << int(env.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert env.find("create_network") == [(strongly,)]
    assert env.find("set_flag") == []
    assert env.find("profile.set_shape") == [("input", (1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))]
    entry = load_bundle(bundle).artifacts[plan.name]
    assert entry["strongly_typed"] is True and entry["builder_flags"] == []
    assert entry["tensorrt_version"] == "11.4.0.106"


@pytest.mark.parametrize("version", ["10.3.0.30", "11.4.0.106"])
def test_int8_builds_the_qdq_model_strongly_typed(monkeypatch, bundle: Path, version: str) -> None:
    _add_int8(bundle)
    env = install(monkeypatch, version)
    plan = build_engine(bundle, "int8")
    assert env.find("parse_from_file") == [(str(bundle / "model.int8.onnx"),)]
    assert env.find("set_flag") == []  # explicit quantization: no INT8 flag on either version
    assert env.find("create_network") == [(1 << 1,)]
    assert plan.name == f"model.int8.{H100}.plan"


def test_trt10_weakly_typed_int8_on_request_and_fp32_without_flags(monkeypatch, bundle: Path) -> None:
    _add_int8(bundle)
    env = install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "int8", strongly_typed=False)
    assert env.find("set_flag") == [("INT8",), ("FP16",)]
    env.calls.clear()
    build_engine(bundle, "fp32")
    assert env.find("set_flag") == [] and env.find("create_network") == [(0,)]
    assert env.find("parse_from_file") == [(str(bundle / "model.onnx"),)]


def test_trt11_refuses_weak_typing(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "11.0.0")
    with pytest.raises(EngineError, match="removed weakly typed"):
        build_engine(bundle, "fp16", strongly_typed=False)


def test_version_compatible_flag(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "11.4.0")
    plan = build_engine(bundle, "fp32", version_compatible=True)
    assert env.find("set_flag") == [("VERSION_COMPATIBLE",)]
    assert load_bundle(bundle).artifacts[plan.name]["version_compatible"] is True


def test_timing_cache_is_saved_and_reloaded(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    env = install(monkeypatch, "10.3.0.30")
    default_cache = bundle / f"timing.{H100}.cache"
    build_engine(bundle, "fp32")
    assert env.find("create_timing_cache") == [(b"",)]
    assert default_cache.read_bytes() == CACHE_MAGIC + b"1"
    env.calls.clear()
    build_engine(bundle, "fp16")  # the second build starts from the first build's timings
    assert env.find("create_timing_cache") == [(CACHE_MAGIC + b"1",)]
    assert env.find("set_timing_cache") == [(1, False)]
    assert default_cache.read_bytes() == CACHE_MAGIC + b"2"
    # an explicit path, and a corrupt cache file that TensorRT rejects: start from an empty cache
    custom = tmp_path / "shared.cache"
    custom.write_bytes(b"garbage")
    env.calls.clear()
    build_engine(bundle, "fp32", timing_cache=custom, force=True)
    assert env.find("create_timing_cache") == [(b"garbage",), (b"",)]
    assert custom.read_bytes() == CACHE_MAGIC + b"1"


def test_engine_written_atomically_and_existing_engine_needs_force(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    written: list[Path] = []
    real = trt_build.atomic_write_bytes

    def spy(path, data):  # noqa: ANN001
        written.append(Path(path))
        real(path, data)

    monkeypatch.setattr(trt_build, "atomic_write_bytes", spy)
    plan = build_engine(bundle, "fp16")
    assert written[0] == plan and written[1].name.startswith("timing.")
    assert not [p for p in bundle.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(BundleError, match="already exists"):
        build_engine(bundle, "fp16")
    assert build_engine(bundle, "fp16", force=True) == plan


def test_failed_build_leaves_bundle_untouched(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "10.3.0.30")
    monkeypatch.setattr(env.trt.Builder, "build_serialized_network", lambda self, n, c: None)
    before = (bundle / "dsedge.json").read_text()
    with pytest.raises(EngineError, match="could not build"):
        build_engine(bundle, "fp16")
    assert (bundle / "dsedge.json").read_text() == before
    assert not list(bundle.glob("*.plan"))


def test_parser_errors_are_reported(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    (bundle / "model.onnx").write_bytes(b"not an onnx file")
    b = load_bundle(bundle, verify=False)
    b.add_artifact("model.onnx", "onnx", "fp32")  # a consistent manifest: the parser must catch it
    b.save()
    with pytest.raises(EngineError, match="parser rejected model.onnx"):
        build_engine(bundle, "fp32")


def test_bad_requests_fail_clearly(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    with pytest.raises(EngineError, match="unknown precision 'fp8'"):
        build_engine(bundle, "fp8")
    with pytest.raises(EngineError, match="invalid batch profile"):
        build_engine(bundle, "fp16", min_batch=8, opt_batch=4)
    with pytest.raises(EngineError, match="optimization level"):
        build_engine(bundle, "fp16", opt_level=9)
    with pytest.raises(BundleError, match="no onnx int8 artifact"):
        build_engine(bundle, "int8")


def test_missing_tensorrt_names_package_and_extra(monkeypatch, bundle: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(MissingDependencyError) as e:
        build_engine(bundle, "fp16")
    assert e.value.package == "tensorrt" and "dsedge[tensorrt]" in str(e.value.hint)


def test_build_cli_without_tensorrt_exits_nonzero(monkeypatch, bundle: Path, capsys) -> None:
    from dsedge.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(SystemExit) as e:
        main(["build", str(bundle), "--precision", "fp16"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "tensorrt" in err and "dsedge[tensorrt]" in err


def test_build_cli_with_fake_tensorrt(monkeypatch, bundle: Path, capsys) -> None:
    from dsedge.cli import main

    env = install(monkeypatch, "11.4.0")
    with pytest.raises(SystemExit) as e:
        main(["build", str(bundle), "--precision", "fp32", "--max-batch", "4", "--opt-batch", "2",
              "--workspace-gb", "1", "--opt-level", "2", "--version-compatible", "--json"])
    assert e.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["engine"].endswith(f"model.fp32.{H100}.plan") and out["tensorrt_version"] == "11.4.0"
    assert env.find("profile.set_shape")[0][3] == (4, 3, 32, 32)
    assert env.find("set_flag") == [("VERSION_COMPATIBLE",)]


def test_build_cli_strongly_typed_on_trt10(monkeypatch, bundle: Path, capsys) -> None:
    from dsedge.cli import main

    env = install(monkeypatch, "10.3.0.30")
    with pytest.raises(SystemExit) as e:
        main(["build", str(bundle), "--precision", "fp16", "--strongly-typed"])
    assert e.value.code == 0
    assert env.find("create_network") == [(1 << 1,)] and env.find("set_flag") == []
    assert "engine written" in capsys.readouterr().out


@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed")
def test_real_build_records_engine_and_reuses_timing_cache(bundle: Path) -> None:
    import tensorrt as trt

    plan = build_engine(bundle, "fp32", max_batch=4, opt_batch=2, workspace_gb=1, opt_level=1)
    entry = load_bundle(bundle).artifacts[plan.name]
    assert entry["tensorrt_version"] == trt.__version__ and entry["profile"]["max"] == [4, 3, 32, 32]
    cache = next(bundle.glob("timing.*.cache"))
    size = cache.stat().st_size
    assert size > 0
    build_engine(bundle, "fp16", max_batch=4, opt_batch=2, workspace_gb=1, opt_level=1)
    assert cache.stat().st_size >= size  # reloaded and extended, not replaced by an empty cache
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(plan.read_bytes()) is not None
