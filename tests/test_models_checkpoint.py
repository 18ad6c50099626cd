"""Checkpoints: safetensors + JSON round trip, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsedge.errors import CheckpointError
from dsedge.models import create_model
from dsedge.models.checkpoint import load_checkpoint, save_checkpoint


def _save(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("ds_resnet50", simam_lambda=0.01)
    meta = {"model": "ds_resnet50", "classes": ["MEL", "NV", "SK"], "model_kwargs": {"simam_lambda": 0.01}}
    save_checkpoint(tmp_path / "best", model, meta)
    return tmp_path / "best.safetensors"


def test_round_trip_is_exact(tmp_path: Path) -> None:
    weights = _save(tmp_path)
    assert weights.is_file() and (tmp_path / "best.json").is_file()
    model, meta = load_checkpoint(tmp_path / "best.json")
    assert meta["num_classes"] == 3 and meta["weights_sha256"]
    assert model.layer1[0].simam1.lam == 0.01
    torch.manual_seed(0)
    ref = create_model("ds_resnet50", simam_lambda=0.01)
    for (k, v), (_, w) in zip(ref.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def test_bad_checkpoints(tmp_path: Path) -> None:
    weights = _save(tmp_path)
    with pytest.raises(CheckpointError, match="expected 'resnet50'"):
        load_checkpoint(weights, expect_model="resnet50")
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(weights)
    meta = json.loads((tmp_path / "best.json").read_text())
    meta.pop("weights_sha256")
    meta["model"], meta["model_kwargs"] = "resnet50", {}
    (tmp_path / "best.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="was edited: model, model_kwargs differ"):
        load_checkpoint(weights)  # the weights file seals the facts the JSON claims
    (tmp_path / "best.json").write_text("{")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(weights)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")


def test_hand_edits_of_result_changing_metadata_are_refused(tmp_path: Path) -> None:
    """Issue 14: editing simam_lambda, classes or preprocessing in the .json changed results silently."""
    weights = _save(tmp_path)
    original = (tmp_path / "best.json").read_text()
    for key, value in (("simam_lambda", 0.5), ("classes", ["NV", "MEL", "SK"]),
                       ("model_kwargs", {"simam_lambda": 0.5})):
        meta = json.loads(original)
        meta[key] = value
        (tmp_path / "best.json").write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=f"was edited: .*{key}"):
            load_checkpoint(weights)
    meta = json.loads(original)
    meta["metrics"] = {"note": "a changed metric does not change results"}
    (tmp_path / "best.json").write_text(json.dumps(meta))
    load_checkpoint(weights)


def test_checkpoint_errors_say_what_the_path_is(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="PyTorch pickle file"):
        load_checkpoint(tmp_path / "model.pt")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "dsedge.json").write_text("{}")
    with pytest.raises(CheckpointError, match="is a bundle, not a checkpoint"):
        load_checkpoint(tmp_path / "b")
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint"):
        load_checkpoint(tmp_path)


def test_checkpoint_without_model_kwargs_in_meta_loads(tmp_path: Path) -> None:
    """The defaults written into the JSON are the ones sealed in the weights (was: 'json was edited')."""
    from dsedge.models.checkpoint import load_checkpoint, save_checkpoint
    from dsedge.models.zoo import create_model

    model = create_model("mobilenet_v2", 3)
    save_checkpoint(tmp_path / "c", model, {"model": "mobilenet_v2", "classes": ["MEL", "NV", "SK"]})
    loaded, meta = load_checkpoint(tmp_path / "c")
    assert meta["model_kwargs"] == {} and meta["num_classes"] == 3


def test_tuning_split_is_recorded_and_sealed(tmp_path: Path) -> None:
    """The held-out tuning slice is a claim ("never trained on"): readable, and not editable by hand."""
    from dsedge.models.checkpoint import tuning_split_record

    record = {"kind": "holdout", "source_split": "train", "fraction": 0.2, "seed": 0, "n": 1,
              "class_counts": {"MEL": 1, "NV": 0, "SK": 0}, "ids": ["ISIC_0000001"], "fingerprint": "ab" * 32}
    model = torch.nn.Linear(2, 3)
    save_checkpoint(tmp_path / "t", model, {"model": "x", "classes": ["MEL", "NV", "SK"], "tuning_split": record})
    assert tuning_split_record(tmp_path / "t.json") == record
    meta_path = tmp_path / "t.json"
    meta = json.loads(meta_path.read_text())
    meta["tuning_split"]["ids"] = ["ISIC_0000002"]  # claim other images were held out
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="edited: tuning_split"):
        tuning_split_record(meta_path)
    save_checkpoint(tmp_path / "none", model, {"model": "x", "classes": ["MEL", "NV", "SK"]})
    assert tuning_split_record(tmp_path / "none.json") is None
