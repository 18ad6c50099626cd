"""Contract tests of `build_engine` against fake TensorRT 10.x and 11.x modules (tests/fake_tensorrt.py).

They pin the builder calls NVIDIA documents for each version: strongly typed
networks from the ONNX's own precision (creation flag 1 << STRONGLY_TYPED on
10.x, no flag on 11.x where bit 1 means something else), the deprecated FP16
flag path only on request or without an FP16 ONNX on 10.x, TF32 cleared for
strict FP32, per-layer precisions from the engine inspector, the device made
current before the builder, the optimization profile, the workspace limit, the
timing cache (per GPU and TensorRT version; a refused cache starts fresh),
atomic writes and the manifest entry the runner relies on.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import warnings
from pathlib import Path

import pytest
from fake_tensorrt import PLAN_MAGIC, cache_info, install
from tiny_bundle import make_tiny_bundle

from dsedge.bundle import load_bundle
from dsedge.engines import trt_build
from dsedge.engines.trt_build import TensorRTWarning, build_engine
from dsedge.errors import BundleError, EngineError, MissingDependencyError
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


def _add_mixed_int8(bundle: Path) -> None:
    """A stand-in for calibrate's mixed twin `model.int8-fp16.onnx`: the same Q/DQ with FP16 float layers."""
    shutil.copy(bundle / "model.fp16.onnx", bundle / "model.int8-fp16.onnx")
    b = load_bundle(bundle)
    b.add_artifact("model.int8-fp16.onnx", "onnx", "int8-fp16", simam="function", source="model.int8.onnx",
                   qdq="tensorrt", float_precision="fp16", reductions="fp32")
    b.save()


def _fp32_only_bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "fp32only", precisions=("fp32",))


@pytest.mark.parametrize("version,expected", [
    # NvInfer.h, NVIDIA/TensorRT release/10.3, release/10.13 and release/11.1
    ("10.3.0.30", {"FP16": 0, "INT8": 1, "VERSION_COMPATIBLE": 13, "EXCLUDE_LEAN_RUNTIME": 14,
                   "REJECT_EMPTY_ALGORITHMS": 12, "ERROR_ON_TIMING_CACHE_MISS": 16, "REFIT_INDIVIDUAL": 23}),
    ("10.13.3.9", {"VERSION_COMPATIBLE": 13, "EDITABLE_TIMING_CACHE": 27, "DISTRIBUTIVE_INDEPENDENCE": 28, "FP4": 26}),
    ("11.1.0.106", {"DIRECT_IO": 11, "VERSION_COMPATIBLE": 12, "EXCLUDE_LEAN_RUNTIME": 13,
                    "ERROR_ON_TIMING_CACHE_MISS": 15, "STRIP_PLAN": 18, "WEIGHT_STREAMING": 20,
                    "EDITABLE_TIMING_CACHE": 26, "DISTRIBUTIVE_INDEPENDENCE": 27}),
])
def test_fake_enums_match_each_releases_headers(monkeypatch, version: str, expected: dict) -> None:
    env = install(monkeypatch, version)
    assert {name: int(getattr(env.trt.BuilderFlag, name)) for name in expected} == expected
    creation = {f.name: int(f) for f in env.trt.NetworkDefinitionCreationFlag}
    if version.startswith("10.3"):
        assert not hasattr(env.trt.BuilderFlag, "DISTRIBUTIVE_INDEPENDENCE") and not hasattr(env.trt.BuilderFlag, "FP4")
        assert creation == {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    elif version.startswith("10.13"):
        assert creation == {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2,
                            "PREFER_AOT_PYTHON_PLUGINS": 3}
    else:
        for gone in ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4", "REJECT_EMPTY_ALGORITHMS",
                     "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"):
            assert not hasattr(env.trt.BuilderFlag, gone), gone
        assert creation == {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}


@pytest.mark.parametrize("version", ["10.3.0.30", "11.4.0.106"])
@pytest.mark.parametrize("fields", ["combined", "split"])
def test_int8_layer_check_reads_both_inspector_spellings(monkeypatch, bundle: Path, version: str, fields: str) -> None:
    _add_int8(bundle)
    env = install(monkeypatch, version)
    env.inspector_fields = fields  # "Format/Datatype" (10.x) or "Format" + "Datatype" (11.x tooling)
    with pytest.warns(TensorRTWarning, match="unquantized layers in FP32"):
        plan = build_engine(bundle, "int8")
    assert load_bundle(bundle).artifacts[plan.name]["layer_precisions"]["counts"] == {"FP32": 2}


def test_int8_layer_check_says_when_it_cannot_read_the_report(monkeypatch, bundle: Path) -> None:
    _add_int8(bundle)
    env = install(monkeypatch, "11.4.0.106")
    # a "Datatype" spelling no version of datatype_of knows: every layer is unreadable
    monkeypatch.setattr("fake_tensorrt.SPLIT_TYPES", {"FP32": "?", "FP16": "?", "INT8": "?"})
    env.inspector_fields = "split"
    with pytest.warns(TensorRTWarning, match="could not read any layer's precision"):
        plan = build_engine(bundle, "int8")
    assert load_bundle(bundle).artifacts[plan.name]["layer_precisions"]["unreadable"] is True


def test_trt10_fp16_is_strongly_typed_from_the_fp16_onnx(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "10.3.0.30")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorRTWarning)  # the preferred path warns about nothing
        plan = build_engine(bundle, "fp16", min_batch=1, opt_batch=4, max_batch=16, workspace_gb=2, opt_level=4)

    assert plan == bundle / f"model.fp16.{H100}.trt10.3.0.30.plan"
    assert plan.read_bytes().startswith(PLAN_MAGIC)
    strongly = 1 << int(env.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert strongly == 2 and env.find("create_network") == [(strongly,)]
    assert env.find("set_flag") == []  # no deprecated BuilderFlag.FP16
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
    assert entry["onnx"] == "model.fp16.onnx" and entry["strongly_typed"] is True
    assert entry["typing"] == "strongly typed: precision from model.fp16.onnx"
    assert entry["builder_flags"] == [] and entry["version_compatible"] is False
    # the inspector's per-layer precisions: the Gemm runs in FP16, as the ONNX says
    assert entry["layer_precisions"]["detailed"] is True
    assert entry["layer_precisions"]["counts"] == {"FP16": 2}


def test_trt10_weakly_typed_fp16_flag_path(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    env = install(monkeypatch, "10.3.0.30")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorRTWarning)  # 10.3: the flag is not deprecated yet
        plan = build_engine(bundle, "fp16", strongly_typed=False)
    assert env.find("create_network") == [(0,)] and env.find("set_flag") == [("FP16",)]
    entry = load_bundle(bundle).artifacts[plan.name]
    assert entry["typing"] == "weakly typed: BuilderFlag FP16" and entry["builder_flags"] == ["FP16"]
    assert entry["strongly_typed"] is False
    # a bundle without model.fp16.onnx: the flag path on the FP32 model is the only fp16 route on 10.x
    only32 = _fp32_only_bundle(tmp_path)
    env.calls.clear()
    build_engine(only32, "fp16")
    assert env.find("parse_from_file") == [(str(only32 / "model.onnx"),)] and env.find("set_flag") == [("FP16",)]
    # 10.12+ deprecates BuilderFlag.FP16: still possible on request, with a warning
    install(monkeypatch, "10.13.3.9")
    with pytest.warns(TensorRTWarning, match="deprecates BuilderFlag.FP16"):
        build_engine(bundle, "fp16", strongly_typed=False, force=True)


def test_trt10_weakly_typed_int8_warns_like_fp16_from_10_12(monkeypatch, bundle: Path) -> None:
    """Issue 25 item 8: NvInfer.h deprecates kINT8 with kFP16 in 10.12; the INT8 flag path said nothing."""
    _add_int8(bundle)
    install(monkeypatch, "10.3.0.30")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorRTWarning)  # 10.3: neither flag is deprecated yet
        build_engine(bundle, "int8", strongly_typed=False)
    env = install(monkeypatch, "10.13.3.9")
    with pytest.warns(TensorRTWarning, match=r"deprecates BuilderFlag\.INT8 and BuilderFlag\.FP16"):
        build_engine(bundle, "int8", strongly_typed=False)
    assert env.find("set_flag") == [("INT8",), ("FP16",)]


def test_engines_of_two_tensorrt_releases_on_one_gpu_live_side_by_side(monkeypatch, bundle: Path) -> None:
    """Issue 25 item 1: the name carries the TensorRT release, so another TensorRT adds an engine."""
    install(monkeypatch, "10.3.0.30")
    jetpack = build_engine(bundle, "fp16")
    install(monkeypatch, "10.13.3.9")
    server = build_engine(bundle, "fp16")  # used to stop at "engine already exists" (or replace it with --force)
    assert jetpack.name == f"model.fp16.{H100}.trt10.3.0.30.plan"
    assert server.name == f"model.fp16.{H100}.trt10.13.3.9.plan"
    b = load_bundle(bundle)
    assert {b.artifacts[p.name]["tensorrt_version"] for p in (jetpack, server)} == {"10.3.0.30", "10.13.3.9"}
    with pytest.raises(BundleError, match="already exists"):
        build_engine(bundle, "fp16")  # the same release on the same GPU still needs --force


def test_trt11_is_strongly_typed_without_any_creation_flag(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    env = install(monkeypatch, "11.4.0.106")
    assert not hasattr(env.trt.BuilderFlag, "FP16")  # the fake mirrors the 11.x removal
    assert int(env.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0
    assert int(env.trt.NetworkDefinitionCreationFlag.PREFER_JIT_PYTHON_PLUGINS) == 1
    plan = build_engine(bundle, "fp16")
    # STRONGLY_TYPED is deprecated and ignored on 11.x; bit 1 would ask for JIT Python plugins
    assert env.find("create_network") == [(0,)]
    assert env.find("set_flag") == []
    assert env.find("profile.set_shape") == [("input", (1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))]
    entry = load_bundle(bundle).artifacts[plan.name]
    assert entry["strongly_typed"] is True and entry["builder_flags"] == []
    assert entry["tensorrt_version"] == "11.4.0.106" and entry["layer_precisions"]["counts"] == {"FP16": 2}
    with pytest.raises(BundleError, match="no onnx fp16 artifact"):  # 11.x: no flag path to fall back on
        build_engine(_fp32_only_bundle(tmp_path), "fp16")


@pytest.mark.parametrize("version,flags", [("10.3.0.30", 1 << 1), ("11.4.0.106", 0)])
def test_int8_builds_the_qdq_model_strongly_typed(monkeypatch, bundle: Path, version: str, flags: int) -> None:
    _add_int8(bundle)
    env = install(monkeypatch, version)
    with pytest.warns(TensorRTWarning, match="unquantized layers in FP32"):
        plan = build_engine(bundle, "int8")  # a Q/DQ model derived from the FP32 graph
    assert env.find("parse_from_file") == [(str(bundle / "model.int8.onnx"),)]
    assert env.find("set_flag") == []  # explicit quantization: no INT8 flag on either version
    assert env.find("create_network") == [(flags,)]
    assert plan.name == f"model.int8.{H100}.trt{version}.plan"
    assert load_bundle(bundle).artifacts[plan.name]["layer_precisions"]["counts"] == {"FP32": 2}


@pytest.mark.parametrize("version", ["10.3.0.30", "11.4.0.106"])
def test_int8_prefers_the_mixed_fp16_twin_so_float_layers_run_fp16(monkeypatch, bundle: Path, version: str) -> None:
    _add_int8(bundle)
    _add_mixed_int8(bundle)
    env = install(monkeypatch, version)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorRTWarning)
        plan = build_engine(bundle, "int8")
    assert env.find("parse_from_file") == [(str(bundle / "model.int8-fp16.onnx"),)] and env.find("set_flag") == []
    entry = load_bundle(bundle).artifacts[plan.name]
    assert entry["precision"] == "int8" and entry["onnx"] == "model.int8-fp16.onnx"
    assert entry["layer_precisions"]["counts"] == {"FP16": 2} and entry["layer_precisions"]["fp32_layer_count"] == 0
    if version.startswith("10."):  # the weakly typed route keeps the plain Q/DQ model and lets the flags choose
        env.calls.clear()
        build_engine(bundle, "int8", strongly_typed=False, force=True)
        assert env.find("parse_from_file") == [(str(bundle / "model.int8.onnx"),)]
        assert env.find("set_flag") == [("INT8",), ("FP16",)]


def test_trt10_weakly_typed_int8_on_request_and_strict_fp32(monkeypatch, bundle: Path) -> None:
    _add_int8(bundle)
    env = install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "int8", strongly_typed=False)
    assert env.find("set_flag") == [("INT8",), ("FP16",)] and env.find("create_network") == [(0,)]
    env.calls.clear()
    plan = build_engine(bundle, "fp32")
    # TF32 is on by default in a builder config: a strict FP32 engine clears it
    assert env.find("set_flag") == [] and env.find("clear_flag") == [("TF32",)]
    assert env.find("create_network") == [(0,)]
    assert env.find("parse_from_file") == [(str(bundle / "model.onnx"),)]
    entry = load_bundle(bundle).artifacts[plan.name]
    assert entry["tf32"] is False and entry["typing"] == "weakly typed: FP32 (no flags)"
    env.calls.clear()
    plan = build_engine(bundle, "fp32", tf32=True, force=True)
    assert env.find("set_flag") == [("TF32",)] and load_bundle(bundle).artifacts[plan.name]["tf32"] is True


def test_trt11_refuses_weak_typing(monkeypatch, bundle: Path) -> None:
    install(monkeypatch, "11.0.0")
    with pytest.raises(EngineError, match="removed weakly typed"):
        build_engine(bundle, "fp16", strongly_typed=False)


def test_version_compatible_flag(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "11.4.0")
    plan = build_engine(bundle, "fp32", version_compatible=True)
    assert env.find("set_flag") == [("VERSION_COMPATIBLE",)]
    entry = load_bundle(bundle).artifacts[plan.name]
    assert entry["version_compatible"] is True and entry["layer_precisions"]["detailed"] is True


def test_builder_is_created_on_the_requested_device(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "10.3.0.30", device_count=2)
    plan = build_engine(bundle, "fp16", device=1)
    names = env.names()
    assert env.find("cudaSetDevice") == [(1,)]
    assert names.index("cudaSetDevice") < names.index("Builder")
    assert env.find("Builder") == [(1,)]  # TensorRT saw device 1 as current when the builder was made
    assert load_bundle(bundle).artifacts[plan.name]["device"] == 1
    with pytest.raises(EngineError, match=r"cudaSetDevice\(3\) failed"):
        build_engine(bundle, "fp16", device=3, force=True)


def test_timing_cache_is_saved_and_reloaded(monkeypatch, bundle: Path) -> None:
    env = install(monkeypatch, "10.3.0.30")
    default_cache = bundle / f"timing.{H100}.trt10.3.0.30.cache"  # GPU and TensorRT version in the name
    build_engine(bundle, "fp32")
    assert env.find("create_timing_cache") == [(b"",)]
    assert cache_info(default_cache.read_bytes())["entries"] == 1
    first = default_cache.read_bytes()
    env.calls.clear()
    build_engine(bundle, "fp16")  # the second build starts from the first build's timings
    assert env.find("create_timing_cache") == [(first,)]
    assert env.find("set_timing_cache") == [(1, False)]
    assert cache_info(default_cache.read_bytes())["entries"] == 2
    entry = load_bundle(bundle).artifacts[f"model.fp16.{H100}.trt10.3.0.30.plan"]
    assert entry["timing_cache"] == {"file": default_cache.name, "status": "loaded"}


def test_unreadable_or_foreign_timing_cache_starts_fresh_with_a_warning(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    # a shared cache written on another GPU: set_timing_cache returns False there
    install(monkeypatch, "10.3.0.30", gpu_name="NVIDIA L4", cc=(8, 9))
    shared = tmp_path / "shared.cache"
    build_engine(bundle, "fp32", timing_cache=shared)
    foreign = shared.read_bytes()
    env = install(monkeypatch, "10.3.0.30")
    with pytest.warns(TensorRTWarning, match="refused it .*starting a fresh timing cache"):
        plan = build_engine(bundle, "fp32", timing_cache=shared)
    assert env.find("set_timing_cache") == [(1, False), (0, False)]
    assert shared.read_bytes() == foreign  # the other GPU's cache is left alone
    own = tmp_path / f"shared.{H100}.trt10.3.0.30.cache"  # this GPU's and TensorRT's, beside the shared one
    assert cache_info(own.read_bytes()) == {"gpu": "NVIDIA H100 80GB HBM3", "version": "10.3.0.30", "entries": 1}
    assert load_bundle(bundle).artifacts[plan.name]["timing_cache"]["status"] == "fresh (refused)"
    # a corrupt file TensorRT cannot read at all
    bad = tmp_path / "bad.cache"
    bad.write_bytes(b"garbage")
    env.calls.clear()
    with pytest.warns(TensorRTWarning, match="cannot read it"):
        build_engine(bundle, "fp32", timing_cache=bad, force=True)
    assert env.find("create_timing_cache") == [(b"garbage",), (b"",)]
    assert cache_info((tmp_path / f"bad.{H100}.trt10.3.0.30.cache").read_bytes())["entries"] == 1


def test_a_refused_shared_cache_is_replaced_by_ours_and_read_back_next_time(monkeypatch, bundle: Path,
                                                                            tmp_path: Path) -> None:
    """Issue 25 item 7: the fresh cache saved beside a refused one used to be written and never read again."""
    install(monkeypatch, "10.3.0.30", gpu_name="NVIDIA L4", cc=(8, 9))
    shared = tmp_path / "shared.cache"
    build_engine(bundle, "fp32", timing_cache=shared)  # the L4's cache, shared by the team
    install(monkeypatch, "10.3.0.30")
    with pytest.warns(TensorRTWarning, match="starting a fresh timing cache"):
        build_engine(bundle, "fp32", timing_cache=shared)
    own = tmp_path / f"shared.{H100}.trt10.3.0.30.cache"
    first = own.read_bytes()
    env = install(monkeypatch, "10.3.0.30")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorRTWarning)  # the second build on the H100 warns about nothing
        plan = build_engine(bundle, "fp16", timing_cache=shared)
    assert env.find("create_timing_cache")[1] == (first,)  # our own cache was read back ...
    assert cache_info(own.read_bytes())["entries"] == 2  # ... and extended, not restarted
    entry = load_bundle(bundle).artifacts[plan.name]["timing_cache"]
    assert entry["file"] == own.name and entry["status"].startswith(f"loaded {own.name}")
    assert cache_info(shared.read_bytes())["gpu"] == "NVIDIA L4"  # the shared file is still the L4's


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


def test_inspector_failure_keeps_the_engine(monkeypatch, bundle: Path) -> None:
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("no inspector in this build")

    install(monkeypatch, "10.3.0.30")
    monkeypatch.setattr(trt_build, "inspect_plan", broken)
    with pytest.warns(TensorRTWarning, match="could not read layer precisions"):
        plan = build_engine(bundle, "fp16")
    assert load_bundle(bundle).artifacts[plan.name]["layer_precisions"] is None


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
    assert out["engine"].endswith(f"model.fp32.{H100}.trt11.4.0.plan") and out["tensorrt_version"] == "11.4.0"
    assert env.find("profile.set_shape")[0][3] == (4, 3, 32, 32)
    assert env.find("set_flag") == [("VERSION_COMPATIBLE",)]


def test_build_cli_typing_and_tf32_options(monkeypatch, bundle: Path, capsys) -> None:
    from dsedge.cli import main

    env = install(monkeypatch, "10.3.0.30")
    with pytest.raises(SystemExit) as e:
        main(["build", str(bundle), "--precision", "fp16", "--weakly-typed"])
    assert e.value.code == 0
    assert env.find("create_network") == [(0,)] and env.find("set_flag") == [("FP16",)]
    assert "weakly typed: BuilderFlag FP16" in capsys.readouterr().out
    env.calls.clear()
    with pytest.raises(SystemExit) as e:
        main(["build", str(bundle), "--precision", "fp32", "--tf32", "--json"])
    assert e.value.code == 0 and json.loads(capsys.readouterr().out)["tf32"] is True
    assert env.find("set_flag") == [("TF32",)]


@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed")
def test_real_build_records_engine_and_reuses_timing_cache(bundle: Path) -> None:
    import tensorrt as trt

    plan = build_engine(bundle, "fp32", max_batch=4, opt_batch=2, workspace_gb=1, opt_level=1)
    entry = load_bundle(bundle).artifacts[plan.name]
    assert entry["tensorrt_version"] == trt.__version__ and entry["profile"]["max"] == [4, 3, 32, 32]
    assert entry["tf32"] is False  # strict FP32: TF32 cleared
    cache = bundle / entry["timing_cache"]["file"]
    assert trt.__version__ in cache.name
    size = cache.stat().st_size
    assert size > 0
    fp16 = build_engine(bundle, "fp16", max_batch=4, opt_batch=2, workspace_gb=1, opt_level=1)
    assert cache.stat().st_size >= size  # reloaded and extended, not replaced by an empty cache
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(plan.read_bytes()) is not None
    # the engine inspector saw what the layers run in: the strongly typed FP16 Gemm in FP16
    layers = load_bundle(bundle).artifacts[fp16.name]["layer_precisions"]
    assert layers["detailed"] is True and layers["counts"].get("FP16", 0) >= 1, layers


def test_build_help_names_the_int8_source_and_the_engine_name() -> None:
    """Issue 26: `build --help` said int8 builds from model.int8.onnx; it prefers model.int8-fp16.onnx."""
    import typer

    from dsedge.cli import app

    build = typer.main.get_command(app).commands["build"]
    (option,) = [p for p in build.params if p.name == "precision"]
    assert "model.int8-fp16.onnx (else model.int8.onnx)" in option.help and "trt<version>.plan" in option.help
