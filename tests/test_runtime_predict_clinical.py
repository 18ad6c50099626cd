"""Predictor results a device UI can act on: quality gate, identity, heat-maps, CSV, folders and globs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from cam_bundle import make_cam_bundle
from lesion_images import lesion_image
from PIL import Image, ImageFilter
from tiny_bundle import CLASSES, make_tiny_bundle

from dsedge.errors import BundleError
from dsedge.runtime import Predictor, load_bundle
from dsedge.runtime.heatmap import BAR_WIDTH
from dsedge.runtime.results import expand_inputs, results_csv


def noise(path: Path, size: tuple[int, int] = (200, 160), seed: int = 0) -> Path:
    lesion_image(size, seed=seed).save(path)  # pixel noise itself is "not a dermoscopy image" now (issue 26)
    return path


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "bad"
    d.mkdir()
    Image.new("RGB", (300, 240)).save(d / "black.png")
    Image.new("RGB", (300, 240), (255, 255, 255)).save(d / "blank.png")
    noise(d / "tiny.png", (20, 10))
    Image.new("RGB", (1, 12000), (90, 60, 40)).save(d / "thin.png")  # 1x12000: 3.4 GB before the fix
    rng = np.random.default_rng(1)
    lesion = np.clip(rng.normal((180, 130, 110), 40, (240, 300, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(lesion).filter(ImageFilter.GaussianBlur(6)).save(d / "blurred.png")
    return {p.stem: p for p in d.iterdir()}


def test_bad_inputs_cannot_be_assessed_and_thin_is_never_decoded(monkeypatch, tmp_path: Path,
                                                                  bad_inputs: dict[str, Path]) -> None:
    import importlib

    predict_mod = importlib.import_module("dsedge.runtime.predict")  # the package re-exports a `predict` function
    decoded: list[str] = []
    real = predict_mod.load_image
    monkeypatch.setattr(predict_mod, "load_image", lambda p: decoded.append(Path(p).stem) or real(p))
    bundle = make_tiny_bundle(tmp_path / "bundle")
    good = noise(tmp_path / "good.png")
    with Predictor(bundle) as p:
        results = {Path(r["image"]).stem: r for r in p.predict([good, *bad_inputs.values()])}
    expected = {"black": "too_dark", "blank": "too_bright", "tiny": "too_small", "thin": "extreme_aspect",
                "blurred": "blurry"}
    for name, flag in expected.items():
        r = results[name]
        assert r["decision"] == "cannot assess" and flag in r["reasons"] and r["probabilities"] is None, r
        assert r["error"] is None and flag in r["quality"]["flags"]
    assert "thin" not in decoded and "tiny" not in decoded  # refused from the header alone
    assert results["good"]["decision"] in ("refer", "NV", "SK") and results["good"]["quality"]["ok"]


def test_every_result_names_model_version_and_bundle(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle")
    with Predictor(bundle) as p:
        (r,) = p.predict([noise(tmp_path / "a.png")])
    assert r["model"] == "tiny" and r["model_version"] == "random-init"
    assert r["bundle_sha256"] == load_bundle(bundle).sha256 and len(r["bundle_sha256"]) == 64
    assert r["risk_calibrated"] is False and isinstance(r["uncertain"], bool)


def test_heatmaps_from_the_engine(tmp_path: Path) -> None:
    bundle = make_cam_bundle(tmp_path / "bundle")
    img = np.zeros((160, 200, 3), np.uint8)
    img[:, 100:] = (220, 40, 40)  # red on the right: MEL evidence (W row MEL weighs red up)
    img[:, :100] = (40, 200, 40)
    img = np.clip(img + np.random.default_rng(0).normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "half.png"
    Image.fromarray(img).save(path)
    with Predictor(bundle) as p:
        (r,) = p.predict([path], heatmaps=tmp_path / "heat")
        (frame,) = p.predict_images([Image.open(path)], names=["frame"], heatmaps=tmp_path / "heat")
    out = Image.open(r["heatmap"])
    shown = "MEL" if r["decision"] == "refer" else r["decision"]
    assert out.size == (200 + BAR_WIDTH, 160) and r["heatmap"].endswith(f"half.{shown}.cam.png")  # full image
    assert Path(frame["heatmap"]).is_file()
    with Predictor(make_tiny_bundle(tmp_path / "plain")) as p, pytest.raises(BundleError, match="--cam"):
        p.predict([path], heatmaps=tmp_path / "heat")


def test_folders_globs_and_csv(tmp_path: Path, capsys) -> None:
    from dsedge.cli import main

    d = tmp_path / "scans"
    d.mkdir()
    for i in range(3):
        noise(d / f"s{i}.png", seed=i)
    (d / "notes.txt").write_text("not an image")
    assert [p.name for p in expand_inputs([d])] == ["s0.png", "s1.png", "s2.png"]
    assert [p.name for p in expand_inputs([str(d / "s[01].png"), tmp_path / "missing.png"])] == \
        ["s0.png", "s1.png", "missing.png"]
    bundle = make_tiny_bundle(tmp_path / "bundle")
    out_csv = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as e:
        main(["predict", str(bundle), str(d), "--csv", str(out_csv), "--json"])
    assert e.value.code in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert len(report["results"]) == 3 and report["policy"]["fitted"] is False
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [Path(r["image"]).name for r in rows] == ["s0.png", "s1.png", "s2.png"]
    assert set(rows[0]) >= {"decision", "melanoma_risk", "bundle_sha256", *(f"p_{c}" for c in CLASSES)}
    assert float(rows[0]["melanoma_risk"]) == pytest.approx(report["results"][0]["melanoma_risk"], abs=1e-6)


def test_csv_of_error_and_cannot_assess_rows() -> None:
    results = [{"image": "x.png", "decision": "cannot assess", "error": "image not found: x.png", "quality": None},
               {"image": "y.png", "decision": "cannot assess", "quality": {"flags": ["too_dark", "blurry"]},
                "probabilities": None}]
    rows = list(csv.DictReader(io.StringIO(results_csv(results, CLASSES))))
    assert rows[0]["error"] == "image not found: x.png" and rows[1]["quality_flags"] == "too_dark;blurry"
    assert rows[1]["p_MEL"] == ""
