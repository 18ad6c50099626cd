"""`dsedge calibrate --weights`: other weights of the bundle's model are quantized, the bundle's FP32 stays the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from dsedge.bundle import load_bundle
from dsedge.calibration.weights import weights_source, with_weights_of
from dsedge.config import PreprocessConfig
from dsedge.errors import CalibrationError
from dsedge.models import create_model
from dsedge.models.checkpoint import save_checkpoint

META = {"model": "ds_resnet50", "classes": ["MEL", "NV", "SK"], "model_kwargs": {},
        "preprocessing": PreprocessConfig.for_size(32).to_dict()}


def _checkpoint(path: Path, seed: int, **meta: object) -> Path:
    torch.manual_seed(seed)
    return save_checkpoint(path, create_model("ds_resnet50").eval(), {**META, **meta})


@pytest.fixture(scope="module")
def pair(tiny_bundle_pair: tuple[Path, Path, Path],
         tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict]:
    """(a bundle with a cam output, a checkpoint of the same model with other weights, that checkpoint
    exported by `weights_source`, its record): one export for every test here."""
    bundle, _, other = tiny_bundle_pair
    source, record = weights_source(load_bundle(bundle), other, tmp_path_factory.mktemp("weights") / "w.onnx")
    return bundle, other, source, record


def test_source_is_the_bundles_graph_with_the_other_weights(pair: tuple[Path, Path, Path, dict]) -> None:
    bundle, _, path, record = pair
    ours, theirs = onnx.load(str(path)), onnx.load(str(bundle / "model.onnx"))
    assert _same_graph(ours, theirs)
    assert "cam" in [o.name for o in ours.graph.output]  # exported with the bundle's outputs
    w = {t.name: numpy_helper.to_array(t) for t in ours.graph.initializer}
    v = {t.name: numpy_helper.to_array(t) for t in theirs.graph.initializer}
    assert any(not np.array_equal(w[k], v[k]) for k in v)  # the other weights, not the bundle's
    assert list(ours.metadata_props) == list(theirs.metadata_props)  # the bundle's sealed facts
    assert record["checkpoint"] == "b.safetensors" and len(record["sha256"]) == 64 and record["qat"] is None


def _same_graph(a: onnx.ModelProto, b: onnx.ModelProto) -> bool:
    """Same nodes (names, op types, inputs, outputs) and initializer names: what the ranges and the search address."""
    def key(m: onnx.ModelProto) -> tuple:
        return ([(n.name, n.op_type, list(n.input), list(n.output)) for n in m.graph.node],
                sorted(t.name for t in m.graph.initializer))
    return key(a) == key(b)


def test_weights_are_matched_by_position_not_by_the_exporters_names(pair: tuple[Path, Path, Path, dict]) -> None:
    """Two exports number their nodes and tensors differently (a process-wide counter): values follow the node."""
    bundle = pair[0]
    ref = onnx.load(str(bundle / "model.onnx"))
    other = onnx.load(str(bundle / "model.onnx"))
    renames = {t.name: f"x_{i}" for i, t in enumerate(other.graph.initializer)}
    for t in other.graph.initializer:
        t.name = renames[t.name]
        arr = numpy_helper.to_array(t)
        t.CopyFrom(numpy_helper.from_array(arr + 1 if arr.dtype == np.float32 else arr, t.name))
    for n in other.graph.node:
        n.name = "renamed_" + n.name
        n.input[:] = [renames.get(i, i) for i in n.input]
    out = with_weights_of(ref, other)
    assert _same_graph(out, ref)
    conv = next(n for n in ref.graph.node if n.op_type == "Conv")
    w = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}[conv.input[1]]
    r = {t.name: numpy_helper.to_array(t) for t in ref.graph.initializer}[conv.input[1]]
    np.testing.assert_array_equal(w, r + 1)
    del other.graph.node[-1]
    with pytest.raises(CalibrationError, match="another graph"):
        with_weights_of(ref, other)


def test_other_classes_or_preprocessing_are_refused(pair: tuple[Path, Path, Path, dict], tmp_path: Path) -> None:
    bundle = pair[0]
    b = load_bundle(bundle)
    with pytest.raises(CalibrationError, match="predicts"):
        weights_source(b, _checkpoint(tmp_path / "c", 2, classes=["NV", "MEL", "SK"]), tmp_path / "c.onnx")
    with pytest.raises(CalibrationError, match="preprocessing"):
        weights_source(b, _checkpoint(tmp_path / "p", 2, preprocessing=PreprocessConfig.for_size(64).to_dict()),
                       tmp_path / "p.onnx")


def test_calibrate_with_weights_quantizes_them_and_leaves_the_reference(pair: tuple[Path, Path, Path, dict],
                                                                        tmp_path: Path,
                                                                        tiny_isic_session: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The INT8 file carries the other weights; model.onnx is untouched; bad weights exit 2 with nothing written."""
    import shutil

    from typer.testing import CliRunner

    from dsedge.calibration.int8 import INT8_NAME
    from dsedge.cli import app, main

    bundle = shutil.copytree(pair[0], tmp_path / "bundle")
    before = (bundle / "model.onnx").read_bytes()
    args = ["calibrate", str(bundle), "--data", str(tiny_isic_session), "--num-images", "8", "--no-sensitivity",
            "--min-agreement", "off", "--max-mel-auc-delta", "off", "--max-acc-delta", "off",
            "--max-mel-referrals-changed", "off", "--allow-mostly-float", "--no-mixed-fp16"]
    with pytest.raises(SystemExit) as bad:
        main([*args, "--weights", str(tmp_path / "missing.safetensors")])
    assert bad.value.code == 2 and "checkpoint not found" in capsys.readouterr().err
    assert not (bundle / INT8_NAME).exists()
    res = CliRunner().invoke(app, [*args, "--weights", str(pair[1])])
    assert res.exit_code == 0, res.output
    assert "grow search starts from the float model" not in res.output  # only said when that search runs
    assert (bundle / "model.onnx").read_bytes() == before
    b = load_bundle(bundle)
    assert b.artifacts[INT8_NAME]["weights"] == "b.safetensors" and b.artifacts[INT8_NAME]["source"] == "model.onnx"
    q = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(bundle / INT8_NAME)).graph.initializer}
    fp = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(pair[0] / "model.onnx")).graph.initializer}
    own = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(pair[2])).graph.initializer}
    floats = [k for k in q if k in fp and q[k].dtype == np.float32 and q[k].size > 1]  # unquantized params (biases)
    assert floats and any(np.array_equal(q[k], own[k]) and not np.array_equal(q[k], fp[k]) for k in floats)
