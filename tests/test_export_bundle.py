"""`export_bundle` / `dsedge export`: the bundle on disk, its manifest, hash checks and bad input.

One DS-ResNet50 bundle (random init, 32 px, probs + inline variant, parity on the
tiny synthetic ISIC tree) is exported once for the module; the checkpoint path
uses a 2-class ResNet50 through the CLI; failure clean-up uses a tiny model
registered for the test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from dsedge.bundle import load_bundle
from dsedge.cli import main
from dsedge.config import PreprocessConfig
from dsedge.errors import BundleError, CheckpointError, ExportError
from dsedge.export import export_bundle
from dsedge.export import manifest as manifest_mod
from dsedge.export.simam_function import DOMAIN, count_simam_calls
from dsedge.models import zoo
from dsedge.models.checkpoint import save_checkpoint
from dsedge.models.simam import SimAM
from dsedge.runtime.preprocess import preprocess_files
from dsedge.utils.io import sha256_file


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory, tiny_isic_session: Path) -> Path:
    out = tmp_path_factory.mktemp("export") / "bundle"
    return export_bundle(None, out, model_name="ds_resnet50", random_init=True, image_size=32,
                         data=tiny_isic_session, split="val", parity_images=6, probs=True,
                         inline_simam=True, cam=True)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_manifest_describes_the_bundle(bundle_dir: Path) -> None:
    m = load_bundle(bundle_dir).manifest
    assert sorted(p.name for p in bundle_dir.iterdir()) == [
        "MODEL_CARD.md", "dsedge.json", "model.fp16.onnx", "model.inline.onnx", "model.onnx", "vectors"]
    arts = m["artifacts"]
    assert (arts["model.onnx"]["kind"], arts["model.onnx"]["precision"], arts["model.onnx"]["simam"]) == (
        "onnx", "fp32", "function")
    assert (arts["model.fp16.onnx"]["kind"], arts["model.fp16.onnx"]["precision"]) == ("onnx", "fp16")
    assert (arts["model.inline.onnx"]["kind"], arts["model.inline.onnx"]["simam"]) == ("onnx-inline", "inline")
    for name, entry in arts.items():
        assert entry["sha256"] == sha256_file(bundle_dir / name)
    assert m["model"] == {"name": "ds_resnet50", "num_classes": 3, "model_kwargs": {},
                          "random_init": True, "simam_lambda": 1e-4}
    assert m["classes"] == ["MEL", "NV", "SK"]
    assert m["input"] == {"name": "input", "shape": ["N", 3, 32, 32], "dtype": "float32", "layout": "NCHW"}
    assert [o["name"] for o in m["outputs"]] == ["logits", "probs", "cam"]
    assert m["outputs"][2]["shape"] == ["N", 3, 1, 1]  # 32 px input: a 1x1 last feature map
    assert m["artifacts"]["MODEL_CARD.md"]["kind"] == "model-card" and m["training"] == {"random_init": True}
    card = (bundle_dir / "MODEL_CARD.md").read_text()
    assert "random initialisation" in card and "Not fitted" in card and "model.fp16.onnx" in card
    assert m["preprocessing"] == PreprocessConfig.for_size(32).to_dict()
    assert m["opset"] == 18 and m["simam"]["calls"] == 32
    assert {"torch", "onnx", "onnxruntime", "onnxscript", "onnxconverter-common"} <= set(m["tools"])
    parity = m["parity"]
    assert parity["inputs"]["kind"] == "images" and parity["inputs"]["count"] == 6
    assert parity["inputs"]["split"] == "val"
    fp32 = parity["artifacts"]["model.onnx"]
    assert fp32["passed"] and fp32["max_abs_logit_diff"] <= 1e-4
    assert parity["artifacts"]["model.inline.onnx"]["max_abs_logit_diff"] <= 1e-4
    assert 0.0 <= parity["artifacts"]["model.fp16.onnx"]["top1_agreement"] <= 1.0
    assert "max_abs_prob_diff" in parity["artifacts"]["model.fp16.onnx"]


def test_artifacts_validate_and_agree(bundle_dir: Path, tiny_isic_session: Path) -> None:
    bundle = load_bundle(bundle_dir)
    fn = onnx.load(str(bundle.require("onnx", "fp32")))
    fp16 = onnx.load(str(bundle.require("onnx", "fp16")))
    flat = onnx.load(str(bundle.require("onnx-inline", "fp32")))
    for model in (fn, fp16, flat):
        onnx.checker.check_model(model, full_check=True)
    assert count_simam_calls(fn) == 32 and count_simam_calls(fp16) == 32
    assert not [n for n in flat.graph.node if n.domain == DOMAIN] and not flat.functions
    # the runtime's own preprocessing feeds every artifact
    images = sorted((tiny_isic_session / "ISIC-2017_Validation_Data").glob("*.jpg"))[:5]
    x = preprocess_files(images, bundle.preprocessing)
    names = ["logits", "probs"]
    logits, probs, cam = _session(bundle.path("model.onnx")).run([*names, "cam"], {"input": x})
    np.testing.assert_allclose(cam.mean(axis=(2, 3)), logits, atol=1e-5)  # the class activation map's mean
    flat_logits, flat_probs = _session(bundle.path("model.inline.onnx")).run(names, {"input": x})
    np.testing.assert_allclose(flat_logits, logits, atol=1e-5)
    np.testing.assert_allclose(flat_probs, probs, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    f16_logits, f16_probs, f16_cam = _session(bundle.path("model.fp16.onnx")).run([*names, "cam"], {"input": x})
    assert f16_probs.dtype == np.float32 and f16_cam.dtype == np.float32
    assert np.abs(f16_probs - probs).max() < 1e-2
    assert np.array_equal(f16_logits.argmax(1), logits.argmax(1))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_tampered_artifact_is_refused(bundle_dir: Path, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    target = copy / ("model.onnx" if damage != "truncate" else "model.fp16.onnx")
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    else:
        target.unlink()
    with pytest.raises(BundleError, match=target.name):
        load_bundle(copy)
    load_bundle(copy, verify=False)  # the manifest itself is still readable


def test_existing_output_needs_force(bundle_dir: Path) -> None:
    before = sha256_file(bundle_dir / "dsedge.json")
    with pytest.raises(BundleError, match="already exists"):
        export_bundle(None, bundle_dir, model_name="ds_resnet50", random_init=True, image_size=32)
    assert sha256_file(bundle_dir / "dsedge.json") == before


def _resnet_checkpoint(root: Path) -> Path:
    torch.manual_seed(0)
    model = zoo.create_model("resnet50", num_classes=2)
    meta = {"model": "resnet50", "classes": ["benign", "malignant"], "model_kwargs": {},
            "preprocessing": PreprocessConfig.for_size(32).to_dict()}
    return save_checkpoint(root / "ckpt" / "best", model, meta)


def test_cli_exports_resnet50_checkpoint_with_force(tmp_path: Path, capsys) -> None:
    weights = _resnet_checkpoint(tmp_path)
    out = tmp_path / "bundle"
    out.mkdir()  # an old bundle (--force replaces only a bundle, issue 14)
    (out / "stale.onnx").write_text("old")
    (out / "dsedge.json").write_text(json.dumps({"format": "dsedge-bundle", "artifacts": {"stale.onnx": {}}}))
    with pytest.raises(SystemExit) as e:
        main(["export", str(weights), "--out", str(out), "--force", "--parity-images", "4", "--cam"])
    assert e.value.code == 0, capsys.readouterr().err
    assert "model.fp16.onnx" in capsys.readouterr().out
    assert not (out / "stale.onnx").exists()
    m = load_bundle(out).manifest
    assert m["model"]["name"] == "resnet50" and m["model"]["random_init"] is False
    assert m["model"]["checkpoint_sha256"] == sha256_file(weights)
    assert m["model"]["simam_lambda"] is None and m["simam"]["calls"] == 0
    assert m["classes"] == ["benign", "malignant"]
    assert m["input"]["shape"] == ["N", 3, 32, 32]
    assert m["parity"]["inputs"]["kind"] == "random"
    assert m["parity"]["artifacts"]["model.onnx"]["max_abs_logit_diff"] <= 1e-4
    logits = _session(out / "model.onnx").run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert logits.shape == (1, 2)
    assert [o["name"] for o in m["outputs"]] == ["logits", "cam"]  # torchvision ResNet50's head works too
    assert m["training"]["epoch"] is not None or "metrics" in m["training"]
    assert "## Training data and procedure" in (out / "MODEL_CARD.md").read_text()
    assert not list(tmp_path.glob(".bundle*"))  # no temp or backup folders left


# ---- bad input: each fails before the slow export, with a clear message ----

def test_missing_checkpoint(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "b")])
    assert e.value.code == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_corrupt_checkpoint_metadata_and_weights(tmp_path: Path) -> None:
    weights = _resnet_checkpoint(tmp_path)
    meta = weights.with_suffix(".json")
    good = meta.read_text()
    meta.write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        export_bundle(weights, tmp_path / "b1")
    meta.write_text(good)
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        export_bundle(weights, tmp_path / "b2")
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()


def test_mismatched_checkpoint(tmp_path: Path) -> None:
    weights = _resnet_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="expected 'ds_resnet50'"):
        export_bundle(weights, tmp_path / "b", model_name="ds_resnet50")
    with pytest.raises(ExportError, match="32px"):
        export_bundle(weights, tmp_path / "b", image_size=64)
    with pytest.raises(ExportError, match="not both"):
        export_bundle(weights, tmp_path / "b", random_init=True)


def test_lambda_in_metadata_must_match_the_model(tmp_path: Path) -> None:
    model = zoo.create_model("ds_resnet50", simam_lambda=0.1)
    weights = save_checkpoint(tmp_path / "ds", model, {
        "model": "ds_resnet50", "classes": ["MEL", "NV", "SK"], "model_kwargs": {}, "simam_lambda": 0.1})
    with pytest.raises(CheckpointError, match="simam_lambda"):
        export_bundle(weights, tmp_path / "b")


def test_unusable_output_and_arguments(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(BundleError, match="not a folder"):
        export_bundle(None, blocker / "sub" / "b", random_init=True, image_size=32)
    with pytest.raises(BundleError, match="not a folder"):
        export_bundle(None, blocker, random_init=True, image_size=32)
    with pytest.raises(ExportError, match="no checkpoint"):
        export_bundle(None, tmp_path / "b")
    with pytest.raises(ExportError, match="parity data not found"):
        export_bundle(None, tmp_path / "b", random_init=True, data=tmp_path / "missing")


class _Tiny(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.simam = SimAM(1e-4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.simam(self.conv(x)).mean(dim=(2, 3)))


def test_failed_parity_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(zoo.MODELS, "tiny_test", zoo.ModelSpec("tiny_test", _Tiny, 16))
    ok = export_bundle(None, tmp_path / "ok", model_name="tiny_test", random_init=True)
    assert load_bundle(ok).manifest["simam"]["calls"] == 1
    monkeypatch.setattr(manifest_mod, "FP32_TOLERANCE", -1.0)  # no model can pass
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_bundle(None, tmp_path / "bad", model_name="tiny_test", random_init=True)
    with pytest.raises(ExportError):
        export_bundle(None, tmp_path / "ok", model_name="tiny_test", random_init=True, force=True)
    assert not (tmp_path / "bad").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]  # no temp folders, old bundle intact
    load_bundle(tmp_path / "ok")
    assert json.loads((tmp_path / "ok" / "dsedge.json").read_text())["model"]["name"] == "tiny_test"


def test_parity_metrics_count_nonfinite_outputs_as_disagreement() -> None:
    ref = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]], np.float32)
    ok = manifest_mod.compare(ref, ref + np.float32(1e-6))
    assert ok["top1_agreement"] == 1.0 and 0 < ok["max_abs_logit_diff"] < 1e-5
    bad = manifest_mod.compare(ref, np.array([[np.nan, 0, 0], [3.0, 0.0, 0.0]], np.float32))
    assert bad["nonfinite_outputs"] == 1 and bad["top1_agreement"] == 0.5
    assert bad["max_abs_logit_diff"] is None
    json.dumps(bad, allow_nan=False)  # the manifest stays strict JSON
