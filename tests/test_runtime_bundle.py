"""Bundle manifest: artifacts are hashed, verified on load, and tampering is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsedge.bundle import MANIFEST_NAME, add_artifact, load_bundle, new_manifest, write_manifest
from dsedge.config import PreprocessConfig
from dsedge.errors import BundleError


def make_bundle(root: Path) -> Path:
    root.mkdir()
    (root / "model.onnx").write_bytes(b"fake onnx bytes" * 100)
    m = new_manifest({"name": "ds_resnet50"}, ["MEL", "NV", "SK"], {"name": "input"}, PreprocessConfig().to_dict())
    add_artifact(m, root, "model.onnx", "onnx", "fp32", simam="function")
    write_manifest(root, m)
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


# ----------------------------------------------------------------------------- the manifest seal (issue 26)

CLINICAL = {"temperature": 1.3, "uncertain_margin": 0.1, "quality": {"min_side": 128},
            "operating_point": {"class": "MEL", "threshold": 0.077}}


def _sealed(tmp_path: Path) -> Path:
    root = make_bundle(tmp_path / "b")
    (root / "roc.png").write_bytes(b"png")
    m = json.loads((root / MANIFEST_NAME).read_text())
    add_artifact(m, root, "roc.png", "report", "n/a")
    m["clinical"] = json.loads(json.dumps(CLINICAL))
    write_manifest(root, m)
    return root


def _remove_roc(m: dict, root: Path) -> None:
    m["artifacts"].pop("roc.png")
    (root / "roc.png").unlink()


@pytest.mark.parametrize("edit, changed", [
    (lambda m, r: m["clinical"]["operating_point"].update(threshold=0.99), "clinical changed"),
    (lambda m, r: m["clinical"].update(temperature=100), "clinical changed"),
    (lambda m, r: m["clinical"].update(uncertain_margin=0.0), "clinical changed"),
    (lambda m, r: m["clinical"]["quality"].update(min_side=100000), "clinical changed"),
    (lambda m, r: m["clinical"].update(new_key=1), "clinical changed"),  # keys added later are sealed too
    (_remove_roc, "artifacts changed"),
    (lambda m, r: m.pop("clinical"), "clinical removed"),
    (lambda m, r: m.update(claims={"sensitivity": 0.99}), "claims added"),
], ids=["threshold", "temperature", "margin", "min-side", "new-clinical-key", "artifact-removed", "clinical-dropped",
        "section-added"])
def test_hand_edits_of_the_manifest_are_refused(tmp_path: Path, edit, changed: str) -> None:
    root = _sealed(tmp_path)
    load_bundle(root)
    m = json.loads((root / MANIFEST_NAME).read_text())
    edit(m, root)
    (root / MANIFEST_NAME).write_text(json.dumps(m, indent=4))  # by hand: the seal is left as it was
    with pytest.raises(BundleError, match=f"was edited after dsedge wrote it: {changed}"):
        load_bundle(root)
    with pytest.raises(BundleError, match="was edited"):
        load_bundle(root, verify=False)  # readers that skip the artifact hashes still see the edit


@pytest.mark.parametrize("seal", [None, "x", {"sha256": "0" * 64, "sections": {}}])
def test_a_missing_or_damaged_seal_is_refused(tmp_path: Path, seal) -> None:
    root = _sealed(tmp_path)
    m = json.loads((root / MANIFEST_NAME).read_text())
    if seal is None:
        m.pop("seal")
    else:
        m["seal"] = seal
    (root / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="no seal|damaged seal"):
        load_bundle(root)


def test_reformatting_the_json_is_not_an_edit(tmp_path: Path) -> None:
    """The seal covers values, not bytes: key order and indentation do not matter."""
    root = _sealed(tmp_path)
    m = json.loads((root / MANIFEST_NAME).read_text())
    (root / MANIFEST_NAME).write_text(json.dumps(dict(reversed(list(m.items()))), indent=None))
    assert load_bundle(root).manifest["clinical"]["operating_point"]["threshold"] == 0.077


def test_dsedge_writers_reseal(tmp_path: Path) -> None:
    """Bundle.save (build) and bundle_update (calibrate, risk) seal what they write; no writer seals by hand."""
    import numpy as np

    from dsedge.bundle import bundle_update

    root = _sealed(tmp_path)
    b = load_bundle(root)
    b.manifest["clinical"]["temperature"] = np.float32(2.0)  # numpy values seal as they read back
    b.save()
    assert load_bundle(root).manifest["clinical"]["temperature"] == 2.0
    with bundle_update(load_bundle(root)) as up:
        up.stage("roc.png").write_bytes(b"new png")
        up.add_artifact("roc.png", "report", "n/a")
        up.set_key("clinical", {**CLINICAL, "temperature": 0.9})
    assert load_bundle(root).manifest["clinical"]["temperature"] == 0.9
    with bundle_update(load_bundle(root)) as up:
        up.remove_artifact("roc.png")
    assert "roc.png" not in load_bundle(root).artifacts and not (root / "roc.png").exists()


@pytest.mark.parametrize("path, value, message", [
    (("operating_point", "threshold"), "high", "clinical.operating_point.threshold must be a number in"),
    (("operating_point", "threshold"), 1.5, "clinical.operating_point.threshold must be a number in"),
    (("temperature",), 0, "clinical.temperature must be a number > 0"),
    (("temperature",), float("nan"), "clinical.temperature must be a number > 0"),
    (("uncertain_margin",), -1, "clinical.uncertain_margin must be a number in"),
    (("quality", "min_side"), "big", "clinical.quality.min_side must be a whole number"),
    (("quality", "min_side"), True, "clinical.quality.min_side must be a whole number"),
])
def test_clinical_values_of_the_wrong_type_are_one_clear_error(tmp_path: Path, path, value, message) -> None:
    """Even sealed (a buggy writer): "high" as a threshold is a BundleError, not a ValueError deep in predict."""
    root = _sealed(tmp_path)
    m = json.loads((root / MANIFEST_NAME).read_text())
    node = m["clinical"]
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    write_manifest(root, m)
    with pytest.raises(BundleError, match=message):
        load_bundle(root)
