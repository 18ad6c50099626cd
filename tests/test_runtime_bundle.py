"""Bundle manifest: artifacts are hashed, verified on load, and tampering is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsedge.config import PreprocessConfig
from dsedge.errors import BundleError
from dsedge.runtime.bundle import MANIFEST_NAME, add_artifact, load_bundle, new_manifest


def make_bundle(root: Path) -> Path:
    root.mkdir()
    (root / "model.onnx").write_bytes(b"fake onnx bytes" * 100)
    m = new_manifest({"name": "ds_resnet50"}, ["MEL", "NV", "SK"], {"name": "input"}, PreprocessConfig().to_dict())
    add_artifact(m, root, "model.onnx", "onnx", "fp32", simam="function")
    (root / MANIFEST_NAME).write_text(json.dumps(m))
    return root


def test_load_find_require(tmp_path: Path) -> None:
    b = load_bundle(make_bundle(tmp_path / "b"))
    assert b.classes == ["MEL", "NV", "SK"]
    assert b.find("onnx", "fp32") == ["model.onnx"]
    assert b.require("onnx", "fp32") == b.root / "model.onnx"
    with pytest.raises(BundleError, match="dsedge calibrate"):
        b.require("onnx", "int8")


def test_flipped_byte_and_truncation_are_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    data = bytearray((root / "model.onnx").read_bytes())
    data[10] ^= 0xFF
    (root / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its manifest sha256"):
        load_bundle(root)
    (root / "model.onnx").write_bytes(b"short")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(root)
    (root / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(root)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="not a dsedge bundle"):
        load_bundle(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{broken")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)
