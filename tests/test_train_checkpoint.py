"""Checkpoints: safetensors + JSON round trip, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsedge.errors import CheckpointError
from dsedge.models import create_model
from dsedge.train.checkpoint import load_checkpoint, save_checkpoint


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
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(weights)
    (tmp_path / "best.json").write_text("{")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(weights)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
