"""`dsedge risk`: temperature + melanoma operating point fitted through the runtime, stored in the bundle,
applied by the Predictor, shown in the model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lesion_images import lesion_image
from tiny_bundle import CLASSES, make_tiny_bundle

from dsedge.clinical.fit import fit_bundle_risk, fit_risk
from dsedge.errors import DsedgeError
from dsedge.runtime import Predictor, load_bundle, preprocess_files

#: skin-like tints per class (the runtime refuses images that are not skin-coloured)
TINTS = {"MEL": (150, 95, 85), "NV": (205, 150, 130), "SK": (180, 140, 105)}


def make_folder_split(root: Path, counts: dict[str, int], seed: int = 0, size: int = 160) -> Path:
    """ROOT/val/<CLASS>/*.jpg: lesion-like images (tests/lesion_images.py) in a class tint with a
    per-image colour shift, so the classes overlap and every image passes the quality checks."""
    rng = np.random.default_rng(seed)
    for label, n in counts.items():
        folder = root / "val" / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            skin = tuple(int(v) for v in np.clip(np.asarray(TINTS[label]) + rng.normal(0, 18, 3), 40, 250))
            lesion_image((size + 20, size), seed=int(rng.integers(1 << 30)), skin=skin).save(
                folder / f"{label}_{i:03d}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder_split(tmp_path_factory.mktemp("risk") / "data", {"MEL": 30, "NV": 60, "SK": 30})


def test_fit_risk_block_from_logits() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    logits = 4.0 * (rng.normal(size=(300, 3)) + 1.2 * np.eye(3)[labels])  # over-confident
    block = fit_risk(logits, labels, CLASSES, target_sensitivity=0.9, resamples=200)
    op = block["operating_point"]
    assert block["temperature"] > 1.5 and block["calibration"]["ece_after"] < block["calibration"]["ece_before"]
    assert op["in_sample"]["sensitivity"]["value"] >= 0.9 and op["class"] == "MEL"
    assert len(op["sensitivity"]["ci95"]) == 2 and op["sensitivity"]["ci"] == op["sensitivity"]["ci95"]
    assert 0 <= block["uncertain_rate"] <= 1 and block["warnings"] == []
    flat = fit_risk(np.zeros((300, 3)) + 1e-3 * logits, labels, CLASSES, resamples=20)  # no information
    assert "search bound" in flat["warnings"][0]
    with pytest.raises(DsedgeError, match="no MEL"):
        fit_risk(logits, labels, ["A", "B", "C"])


def test_fit_bundle_stores_and_predictor_applies(data: Path, tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle")
    block = fit_bundle_risk(bundle, data, "val", target_sensitivity=0.9, resamples=200)
    b = load_bundle(bundle)  # verifies every sha256, the new PNGs and the card included
    assert b.manifest["clinical"] == json.loads(json.dumps(block))
    assert {"reliability.png", "roc.png", "MODEL_CARD.md"} <= set(b.artifacts)
    from dsedge.runtime.quality import QualityThresholds, check_files

    flagged = check_files(sorted((data / "val").glob("*/*.jpg")), QualityThresholds())
    assert block["fitted_on"]["images"] == 120 and block["fitted_on"]["quality_flagged"] == len(flagged) <= 2
    op = block["operating_point"]
    assert op["in_sample"]["sensitivity"]["value"] >= 0.9 and op["positives"] == 30
    assert op["claim_method"] == "5-fold cross-fitted" and op["sensitivity"]["n"] == 30
    card = (bundle / "MODEL_CARD.md").read_text()
    assert f"{op['threshold']:.4f}" in card and "Intended use" in card and "Not fitted" not in card

    images = sorted((data / "val" / "MEL").glob("*.jpg"))[:4] + sorted((data / "val" / "NV").glob("*.jpg"))[:4]
    with Predictor(bundle) as p:
        results = p.predict(images)
        logits = p.infer(preprocess_files(images[:1], p.preprocessing))["logits"]
    expected = np.exp(logits / block["temperature"]) / np.exp(logits / block["temperature"]).sum()
    assert results[0]["probabilities"]["MEL"] == pytest.approx(float(expected[0, 0]), abs=1e-5)
    for r in results:
        assert r["risk_calibrated"] is True and r["bundle_sha256"] == b.sha256
        want = "refer" if r["melanoma_risk"] >= op["threshold"] else max(("NV", "SK"), key=r["probabilities"].get)
        assert r["decision"] == want


def test_cli_risk_and_missing_mel(data: Path, tmp_path: Path, capsys) -> None:
    from dsedge.cli import main

    bundle = make_tiny_bundle(tmp_path / "bundle")
    with pytest.raises(SystemExit) as e:
        main(["risk", str(bundle), "--data", str(data), "--resamples", "50", "--target-sensitivity", "0.95"])
    out = capsys.readouterr().out
    assert e.value.code in (0, None) and "refer when P(MEL) >=" in out and "95 % CI" in out
    assert load_bundle(bundle).manifest["clinical"]["operating_point"]["target_sensitivity"] == 0.95
    with pytest.raises(SystemExit) as e:
        main(["risk", str(bundle), "--data", str(tmp_path / "none")])
    assert e.value.code == 2
    with pytest.raises(DsedgeError, match="test split"):
        fit_bundle_risk(bundle, data, "test")
