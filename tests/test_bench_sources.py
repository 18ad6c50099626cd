"""Bench sources: the shipped reference checkpoint (guarded import) drives the default job when present."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

from dsedge.bench import sources
from dsedge.bench.progress import BenchProgress


def _fake_weights(monkeypatch: pytest.MonkeyPatch, path: Path | None) -> None:
    """As if this install shipped `path` as its reference weights (None: ships none)."""
    import dsedge.models.weights as weights

    monkeypatch.setattr(weights, "reference_checkpoint", lambda *_a, **_k: path)


def test_shipped_checkpoint_is_optional(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "dsedge.models.weights", None)  # an install without the module
        assert sources.shipped_checkpoint() is None
    _fake_weights(monkeypatch, None)  # exists, but no weights shipped
    assert sources.shipped_checkpoint() is None
    _fake_weights(monkeypatch, tmp_path / "ref.safetensors")
    assert sources.shipped_checkpoint() == tmp_path / "ref.safetensors"


def test_default_job_exports_the_shipped_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch

    from dsedge.config import PreprocessConfig
    from dsedge.models.checkpoint import save_checkpoint
    from dsedge.models.zoo import create_model

    torch.manual_seed(1)
    ckpt = save_checkpoint(tmp_path / "reference", create_model("ds_resnet50"), {
        "model": "ds_resnet50", "classes": ["MEL", "NV", "SK"], "simam_lambda": 1e-4, "model_kwargs": {},
        "preprocessing": PreprocessConfig.for_size(32).to_dict()})
    _fake_weights(monkeypatch, ckpt)
    with BenchProgress(Console(quiet=True), enabled=False) as progress:
        source = sources.default_source(tmp_path / "work", 224, progress)
    assert source.checkpoint == ckpt and source.random_weights is False and source.torch_matches_bundle
    assert source.image_size == 32  # the shipped model's own input size, not --image-size
    assert source.description.startswith("shipped reference DS-ResNet50 (reference.safetensors)")
    assert "16 synthetic images" in source.description and not source.notes
    assert source.bundle.find("onnx", "int8") and progress.phases[0].startswith("exporting reference")
