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

from dsedge.bundle import load_bundle
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


def test_engine_is_picked_by_tensorrt_release_on_one_gpu_model(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    """Issue 25 item 1: two releases on one GPU model used to share one file name; now both are kept."""
    install(monkeypatch, "10.3.0.30")
    jetpack = build_engine(bundle, "fp16", max_batch=16)
    install(monkeypatch, "10.13.3.9")
    server = build_engine(bundle, "fp16", max_batch=16)
    for version, plan in (("10.3.0.30", jetpack), ("10.13.3.9", server)):
        repo = export_triton(bundle, tmp_path / version, max_batch=16, backends=("tensorrt",),
                             gpu="NVIDIA H100 80GB HBM3", tensorrt_version=version)
        assert (repo / "dsedge" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    with pytest.warns(TritonWarning, match=r"pass --tensorrt-version\); other engines of this precision: .*trt10"):
        export_triton(bundle, tmp_path / "guess", max_batch=16, backends=("tensorrt",), gpu="NVIDIA H100 80GB HBM3")


def test_force_refuses_a_model_folder_with_the_users_files(bundle: Path, tmp_path: Path, capsys) -> None:
    """Issue 26: `export-triton b1 tri --name foo --force` deleted tri/foo/mine.txt."""
    from dsedge.cli import main

    mine = tmp_path / "tri" / "foo" / "mine.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    with pytest.raises(SystemExit) as e:
        main(["export-triton", str(bundle), str(tmp_path / "tri"), "--name", "foo", "--backend", "onnx", "--force"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "replaces only a model folder dsedge wrote" in err and "mine.txt" in err
    assert mine.read_text() == "mine"
    # a folder this export wrote is replaced with --force, also when it was written before ...
    export_triton(bundle, tmp_path / "tri", model_name="bar", backends=("onnx",))
    export_triton(bundle, tmp_path / "tri", model_name="bar", backends=("onnx",), force=True, max_batch=4)
    assert _parse(tmp_path / "tri" / "bar" / "config.pbtxt").max_batch_size == 4
    # ... but not once a user put something into it, even deep inside the version folder
    (tmp_path / "tri" / "bar" / "1" / "notes.txt").write_text("keep")
    with pytest.raises(DsedgeError, match=r"also holds 1/notes\.txt"):
        export_triton(bundle, tmp_path / "tri", model_name="bar", backends=("onnx",), force=True)
    assert (tmp_path / "tri" / "bar" / "1" / "notes.txt").read_text() == "keep"


def test_a_file_as_repository_is_a_user_error_not_an_internal_one(bundle: Path, tmp_path: Path, capsys) -> None:
    """Issue 26: `export-triton b1 tri/keep.txt` (a file) exited 3."""
    from dsedge.cli import main

    keep = tmp_path / "tri" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("keep")
    for repo in (keep, keep / "sub"):
        with pytest.raises(SystemExit) as e:
            main(["export-triton", str(bundle), str(repo), "--backend", "onnx"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "is a file, not a folder" in err and "internal error" not in err
    assert keep.read_text() == "keep"
    model_file = tmp_path / "tri" / "dsedge"  # a file where the model folder would go, even with --force
    model_file.write_text("not a folder")
    with pytest.raises(DsedgeError, match="exists and is not a model folder"):
        export_triton(bundle, tmp_path / "tri", backends=("onnx",), force=True)
    assert model_file.read_text() == "not a folder"


def _with_external_data(bundle: Path, location: str) -> None:
    """Rewrite the bundle's model.onnx so its weight W lives in external data at `location` (manifest updated)."""
    import onnx

    model = onnx.load(str(bundle / "model.onnx"), load_external_data=False)
    w = next(t for t in model.graph.initializer if t.name == "W")
    del w.external_data[:]
    w.ClearField("raw_data")
    del w.float_data[:]
    w.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "36")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(bundle / "model.onnx"))
    b = load_bundle(bundle, verify=False)
    b.add_artifact("model.onnx", "onnx", "fp32", simam="function")
    b.save()


def test_external_data_outside_the_bundle_is_refused(bundle: Path, tmp_path: Path, capsys) -> None:
    """Issue 26: an external-data path ../../../../etc/passwd was copied into the repository with exit 0."""
    from dsedge.cli import main

    _with_external_data(bundle, "../../../../etc/passwd")
    with pytest.raises(SystemExit) as e:
        main(["export-triton", str(bundle), str(tmp_path / "repo"), "--backend", "onnx"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "external data '../../../../etc/passwd' outside the bundle" in err
    assert not (tmp_path / "repo" / "dsedge").exists()
    _with_external_data(bundle, "/etc/passwd")
    with pytest.raises(BundleError, match="outside the bundle"):
        export_triton(bundle, tmp_path / "repo", backends=("onnx",))


def test_external_data_inside_the_bundle_travels_with_the_model(bundle: Path, tmp_path: Path) -> None:
    from tiny_bundle import WEIGHT

    (bundle / "weights.bin").write_bytes(WEIGHT.astype(np.float32).tobytes())
    _with_external_data(bundle, "weights.bin")
    repo = export_triton(bundle, tmp_path / "repo", backends=("onnx",))
    served = repo / "dsedge" / "1"
    assert sorted(p.name for p in served.iterdir()) == ["model.onnx", "weights.bin"]
    sess = ort.InferenceSession(str(served / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.ones((1, 3, 32, 32), np.float32)})[0].shape == (1, 3)


def test_full_disk_names_the_destination_not_the_source(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    """Issue 26: a full disk during export-triton named the bundle's file it was reading."""
    import errno
    import shutil

    from dsedge.export import triton

    def full(src, dst, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(triton.shutil, "copy2", full)
    with pytest.raises(DsedgeError) as e:
        export_triton(bundle, tmp_path / "repo", backends=("onnx",))
    assert "no space left" in e.value.message and str(tmp_path / "repo" / "dsedge") in e.value.message
    assert str(bundle) not in e.value.message
    monkeypatch.setattr(triton.shutil, "copy2", shutil.copy2)
    assert not [p for p in (tmp_path / "repo").iterdir()]  # no half-written model folder or temp left
