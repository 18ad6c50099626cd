"""Triton repository export: config.pbtxt must parse as Triton's ModelConfig protobuf text format.

tritonclient (which ships model_config_pb2) pulls in grpc; instead we build the
subset of Triton's `model_config.proto` we emit with descriptor_pb2 (same
message, field and enum names and numbers as Triton's proto) and let
protobuf's strict text_format parser validate the file: an unknown field, a
wrong type or bad syntax fails the parse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fake_tensorrt import install
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tiny_bundle import CLASSES, make_tiny_bundle

from dsedge.engines.trt_build import build_engine
from dsedge.errors import BundleError, DsedgeError
from dsedge.export.triton import TritonWarning, export_triton, server_args

F = descriptor_pb2.FieldDescriptorProto


def _model_config_class() -> type:
    fdp = descriptor_pb2.FileDescriptorProto(name="dsedge_test_model_config.proto", package="inference", syntax="proto3")
    dt = fdp.enum_type.add(name="DataType")
    for i, n in enumerate(["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64",
                           "TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32",
                           "TYPE_FP64", "TYPE_STRING", "TYPE_BF16"]):
        dt.value.add(name=n, number=i)

    def msg(name: str, fields: list[tuple]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = tname

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("ModelInput", [("name", 1, F.TYPE_STRING, opt, None), ("data_type", 2, F.TYPE_ENUM, opt, ".inference.DataType"),
                       ("dims", 4, F.TYPE_INT64, rep, None)])
    msg("ModelOutput", [("name", 1, F.TYPE_STRING, opt, None), ("data_type", 2, F.TYPE_ENUM, opt, ".inference.DataType"),
                        ("dims", 3, F.TYPE_INT64, rep, None), ("label_filename", 5, F.TYPE_STRING, opt, None)])
    msg("ModelDynamicBatching", [("preferred_batch_size", 1, F.TYPE_INT32, rep, None),
                                 ("max_queue_delay_microseconds", 2, F.TYPE_UINT64, opt, None)])
    grp = fdp.message_type.add(name="ModelInstanceGroup")
    kind = grp.enum_type.add(name="Kind")
    for i, n in enumerate(["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"]):
        kind.value.add(name=n, number=i)
    grp.field.add(name="name", number=1, type=F.TYPE_STRING, label=opt)
    grp.field.add(name="kind", number=4, type=F.TYPE_ENUM, label=opt, type_name=".inference.ModelInstanceGroup.Kind")
    grp.field.add(name="count", number=2, type=F.TYPE_INT32, label=opt)
    msg("ModelConfig", [("name", 1, F.TYPE_STRING, opt, None), ("platform", 2, F.TYPE_STRING, opt, None),
                        ("max_batch_size", 4, F.TYPE_INT32, opt, None),
                        ("input", 5, F.TYPE_MESSAGE, rep, ".inference.ModelInput"),
                        ("output", 6, F.TYPE_MESSAGE, rep, ".inference.ModelOutput"),
                        ("instance_group", 7, F.TYPE_MESSAGE, rep, ".inference.ModelInstanceGroup"),
                        ("dynamic_batching", 11, F.TYPE_MESSAGE, opt, ".inference.ModelDynamicBatching")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


ModelConfig = _model_config_class()


def _parse(path: Path):  # noqa: ANN202
    return text_format.Parse(path.read_text(), ModelConfig())


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "bundle")


def test_onnx_repository_parses_and_serves_the_same_model(bundle: Path, tmp_path: Path) -> None:
    repo = export_triton(bundle, tmp_path / "repo", max_batch=16)  # no engine: ONNX only, as <name>
    assert sorted(p.name for p in repo.iterdir()) == ["dsedge"]
    cfg = _parse(repo / "dsedge" / "config.pbtxt")
    assert cfg.name == "dsedge" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 16
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("input", [3, 32, 32])]
    assert cfg.input[0].data_type == 11  # TYPE_FP32
    out = cfg.output[0]
    assert (out.name, list(out.dims), out.label_filename) == ("logits", [3], "labels.txt")
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16]
    assert (repo / "dsedge" / "labels.txt").read_text().split() == CLASSES
    served = repo / "dsedge" / "1" / "model.onnx"
    assert served.read_bytes() == (bundle / "model.onnx").read_bytes()
    sess = ort.InferenceSession(str(served), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((2, 3, 32, 32), np.float32)})[0].shape == (2, 3)


def test_tensorrt_and_onnx_models(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    plan = build_engine(bundle, "fp16", opt_batch=4, max_batch=16)
    with pytest.warns(TritonWarning, match="built on NVIDIA H100 80GB HBM3 with TensorRT 10.3.0.30"):
        repo = export_triton(bundle, tmp_path / "repo", model_name="lesions", max_batch=16, dynamic_batching=False)
    assert sorted(p.name for p in repo.iterdir()) == ["lesions", "lesions_onnx"]
    trt_cfg = _parse(repo / "lesions" / "config.pbtxt")
    assert trt_cfg.platform == "tensorrt_plan" and trt_cfg.instance_group[0].kind == 1  # KIND_GPU
    assert not trt_cfg.HasField("dynamic_batching")
    assert (repo / "lesions" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert _parse(repo / "lesions_onnx" / "config.pbtxt").platform == "onnxruntime_onnx"
    with pytest.raises(DsedgeError, match="exceeds the engine's profile maximum 16"):
        export_triton(bundle, tmp_path / "repo2", max_batch=64, backends=("tensorrt",), gpu="NVIDIA H100 80GB HBM3",
                      tensorrt_version="10.3.0.30")


def test_errors(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no TensorRT engine"):
        export_triton(bundle, tmp_path / "r", backends=("tensorrt",))
    with pytest.raises(DsedgeError, match="unknown Triton backend"):
        export_triton(bundle, tmp_path / "r", backends=("tflite",))
    export_triton(bundle, tmp_path / "r", backends=("onnx",))
    with pytest.raises(DsedgeError, match="already exists"):
        export_triton(bundle, tmp_path / "r", backends=("onnx",))
    export_triton(bundle, tmp_path / "r", backends=("onnx",), force=True, max_batch=4)
    assert _parse(tmp_path / "r" / "dsedge" / "config.pbtxt").max_batch_size == 4


def test_cli(bundle: Path, tmp_path: Path, capsys) -> None:
    from dsedge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["export-triton", str(bundle), str(tmp_path / "repo"), "--backend", "onnx", "--max-batch", "8"])
    assert e.value.code == 0
    assert _parse(tmp_path / "repo" / "dsedge" / "config.pbtxt").max_batch_size == 8


@pytest.mark.parametrize("bad", ["../../escape", "a/b", "/tmp/abs-model", ".", "..", "", "-x", "a\\b"])
def test_model_name_must_be_a_plain_name(bundle: Path, tmp_path: Path, bad: str) -> None:
    repo = tmp_path / "work" / "repo"
    repo.mkdir(parents=True)
    keep = repo / "other_model" / "config.pbtxt"
    keep.parent.mkdir()
    keep.write_text("keep me")
    with pytest.raises(DsedgeError, match="invalid Triton model name"):
        export_triton(bundle, repo, model_name=bad, backends=("onnx",), force=True)
    assert keep.read_text() == "keep me"  # with --force, '.' used to delete the whole repository
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["repo"]  # nothing written beside it
    assert not Path("/tmp/abs-model").exists()


def test_cli_rejects_a_path_as_model_name(bundle: Path, tmp_path: Path, capsys) -> None:
    from dsedge.cli import main

    repo = tmp_path / "repo"
    with pytest.raises(SystemExit) as e:
        main(["export-triton", str(bundle), str(repo), "--backend", "onnx", "--name", "../outside", "--force"])
    assert e.value.code == 2
    assert "invalid Triton model name" in capsys.readouterr().err
    assert not (tmp_path / "outside").exists()


def test_engine_is_picked_for_the_serving_gpu_and_tensorrt(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    install(monkeypatch, "10.3.0.30", gpu_name="NVIDIA L4", cc=(8, 9))
    l4 = build_engine(bundle, "fp16", max_batch=16)
    install(monkeypatch, "10.13.3.9")
    h100 = build_engine(bundle, "fp16", max_batch=16)
    repo = export_triton(bundle, tmp_path / "r1", max_batch=16, backends=("tensorrt",), gpu="NVIDIA L4",
                         tensorrt_version="10.3.0.30")
    assert (repo / "dsedge" / "1" / "model.plan").read_bytes() == l4.read_bytes()
    repo = export_triton(bundle, tmp_path / "r2", max_batch=16, backends=("tensorrt",),
                         gpu="nvidia-h100-80gb-hbm3", tensorrt_version="10.13.3.9")  # a GPU slug works too
    assert (repo / "dsedge" / "1" / "model.plan").read_bytes() == h100.read_bytes()
    with pytest.raises(BundleError, match="suits the serving machine.*built with TensorRT 10.3.0.30"):
        export_triton(bundle, tmp_path / "r3", max_batch=16, backends=("tensorrt",), gpu="NVIDIA L4",
                      tensorrt_version="10.3.1")  # another patch release refuses the plan
    with pytest.warns(TritonWarning, match="must match it .*--gpu and --tensorrt-version.*other engines"):
        export_triton(bundle, tmp_path / "r4", max_batch=16, backends=("tensorrt",))


def test_version_compatible_plan_gets_the_backend_setting(monkeypatch, bundle: Path, tmp_path: Path, capsys) -> None:
    install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp16", max_batch=16, version_compatible=True)
    repo = export_triton(bundle, tmp_path / "repo", max_batch=16, backends=("tensorrt",),
                         gpu="NVIDIA H100 80GB HBM3", tensorrt_version="11.4.0")  # 10.x VC plan on 11.x
    cfg = repo / "dsedge" / "config.pbtxt"
    assert _parse(cfg).platform == "tensorrt_plan"  # the comment keeps the protobuf text valid
    assert server_args(repo) == ["--backend-config=tensorrt,version-compatible=true"]
    from dsedge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["export-triton", str(bundle), str(tmp_path / "repo2"), "--backend", "tensorrt", "--max-batch", "16",
              "--gpu", "NVIDIA H100 80GB HBM3", "--tensorrt-version", "10.3.0.30"])
    assert e.value.code == 0
    assert "version-compatible=true" in capsys.readouterr().out


def test_engine_profile_must_start_at_batch_1(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp16", min_batch=2, opt_batch=4, max_batch=16)
    with pytest.raises(DsedgeError, match="profile starts at batch 2"):
        export_triton(bundle, tmp_path / "repo", max_batch=16, backends=("tensorrt",),
                      gpu="NVIDIA H100 80GB HBM3", tensorrt_version="10.3.0.30")
    assert not (tmp_path / "repo").exists()
