"""`write_vectors`: the golden vectors every bundle carries (dsedge/export/vectors.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_bundle import make_tiny_bundle

from dsedge.bundle import load_bundle
from dsedge.errors import BundleError
from dsedge.export.safety import check_replaceable
from dsedge.export.vectors import tie_width, write_vectors
from dsedge.runtime.decision import DecisionPolicy
from dsedge.runtime.preprocess import preprocess_image, resized_size
from dsedge.utils.images import load_rgb


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = make_tiny_bundle(tmp_path / "bundle", crop=112, resize=128)
    write_vectors(root)
    return root


def _index(bundle: Path) -> dict:
    return json.loads((bundle / "vectors" / "vectors.json").read_text())


def test_three_generated_images_with_their_tensors(bundle: Path) -> None:
    index = _index(bundle)
    folder = bundle / "vectors"
    assert [im["name"] for im in index["images"]] == ["fullsize", "odd_aspect", "grayscale"]
    pre = load_bundle(bundle).preprocessing
    for im in index["images"]:
        with Image.open(folder / im["file"]) as raw:
            assert list(raw.size) == im["stored_size"] and raw.format == "JPEG"
            assert raw.getexif().get(0x0112, 1) == im["exif_orientation"]
            assert raw.mode == im["mode"]
        np.testing.assert_array_equal(np.load(folder / im["tensor"]), preprocess_image(load_rgb(folder / im["file"]), pre))
    full, odd, gray = index["images"]
    assert full["stored_size"][0] * full["stored_size"][1] >= 12_000_000
    assert odd["exif_orientation"] == 6 and odd["stored_size"] == odd["upright_size"][::-1]
    assert gray["mode"] == "L"
    # every file is listed with its sha256
    assert set(index["files"]) == {p.name for p in folder.iterdir()} - {"vectors.json"}


def test_odd_aspect_crop_offset_is_a_half_even_tie() -> None:
    w = tie_width(128, 112)
    rw, _ = resized_size(w, 517, 128)
    assert (rw - 112) / 2 % 1 == 0.5 and round((rw - 112) / 2) != int((rw - 112) / 2 + 0.5)


def test_answers_per_artifact_use_the_bundle_temperature(tmp_path: Path) -> None:
    root = make_tiny_bundle(tmp_path / "b", crop=112, resize=128)
    b = load_bundle(root)
    b.manifest["clinical"] = {"temperature": 3.0, "operating_point": {"class": "MEL", "threshold": 0.34}}
    b.save()
    write_vectors(root)
    index = _index(root)
    assert set(index["artifacts"]) == {"model.onnx", "model.fp16.onnx"}
    assert index["policy"]["temperature"] == 3.0
    entry = index["artifacts"]["model.onnx"]
    logits = np.load(root / "vectors" / entry["logits"])
    probs = np.load(root / "vectors" / entry["probs"])
    policy = DecisionPolicy.from_manifest(load_bundle(root).manifest)
    np.testing.assert_allclose(probs, policy.probabilities(logits))
    assert not np.allclose(probs, DecisionPolicy(classes=("MEL", "NV", "SK")).probabilities(logits))
    assert entry["decisions"] == [policy.decide(p)["decision"] for p in probs]
    assert entry["artifact_sha256"] == load_bundle(root).artifacts["model.onnx"]["sha256"]


def test_force_replaces_a_bundle_with_vectors_but_not_a_foreign_file_in_them(bundle: Path) -> None:
    check_replaceable(bundle, force=True)
    (bundle / "vectors" / "my-notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="vectors/"):
        check_replaceable(bundle, force=True)


def test_rewriting_replaces_the_folder_whole(bundle: Path) -> None:
    (bundle / "vectors" / "model.logits.npy").write_bytes(b"broken")
    write_vectors(bundle)
    index = _index(bundle)
    assert np.load(bundle / "vectors" / "model.logits.npy").shape == (3, 3)
    assert [p.name for p in bundle.iterdir() if p.name.startswith(".")] == []
    assert len(index["files"]) == 3 * 2 + 2 * 2
