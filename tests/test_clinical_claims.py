"""Claims: stated with where they were measured, refused when measured on their own fitting data
unmarked, and checked claim by claim on any labelled split (`dsedge eval BUNDLE`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_clinical_fit import make_folder_split
from tiny_bundle import make_tiny_bundle

from dsedge.clinical.claims import (
    check_bundle_claims,
    check_provenance,
    claims_markdown,
    holds,
    make_claim,
)
from dsedge.clinical.fit import fit_bundle_risk
from dsedge.errors import DsedgeError

VAL = {"split": "val", "fingerprint": "aaa", "method": "5-fold cross-fitted"}
TUNE = {"split": "tuning", "fingerprint": "bbb"}


def test_holds_within_and_at_least() -> None:
    within = make_claim(0.9, [0.735, 0.979], "within", VAL, VAL)
    assert holds(within, 0.77) and not holds(within, 0.70) and not holds(within, 0.99)
    assert holds(within, None) is None
    at_least = make_claim(0.995, [0.99, 0.999], "at_least", TUNE, None, limit=0.99)
    assert holds(at_least, 0.99) and holds(at_least, 1.0) and not holds(at_least, 0.985)
    with pytest.raises(ValueError):
        make_claim(0.5, None, "about", VAL, None)


def test_a_claim_measured_on_its_fitting_data_must_say_so() -> None:
    held_out = {"split": "val", "fingerprint": "ccc", "method": "held out (reporting split)"}
    check_provenance({"ok": make_claim(0.8, [0.6, 0.9], "within", held_out, TUNE)})
    check_provenance({"cf": make_claim(0.8, [0.6, 0.9], "within", VAL, VAL)})  # cross-fitted: marked
    same = {"split": "val", "fingerprint": "aaa", "method": "measured"}
    with pytest.raises(DsedgeError, match="fitted it"):
        check_provenance({"bad": make_claim(0.9, [0.7, 0.98], "within", same, VAL)})
    check_provenance({"labelled": make_claim(0.9, [0.7, 0.98], "within", same, VAL, in_sample_label="in-sample")})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_folder_split(tmp_path_factory.mktemp("claims") / "data", {"MEL": 30, "NV": 60, "SK": 30})
    test = make_folder_split(tmp_path_factory.mktemp("claims_test") / "data", {"MEL": 30, "NV": 40, "SK": 20}, seed=7)
    (test / "val").rename(root / "test")
    return root


def test_risk_claims_are_cross_fitted_and_eval_bundle_checks_them(data: Path, tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle")
    block = fit_bundle_risk(bundle, data, "val", resamples=50)
    op = block["operating_point"]
    assert op["measured_on"]["method"] == "5-fold cross-fitted" and op["sensitivity"]["n"] == 30
    assert op["in_sample"]["label"].startswith("in-sample")
    lo, hi = op["sensitivity"]["ci"]
    assert lo < op["sensitivity"]["value"] <= hi
    res = check_bundle_claims(bundle, data, "test", backends=("onnxruntime",))
    rows = {r["name"]: r for r in res["rows"]}
    sens = rows["melanoma_sensitivity"]
    assert sens["n"] == 30 and isinstance(sens["holds"], bool) and sens["independent"] is True
    assert sens["holds"] == (sens["claimed_ci"][0] <= sens["measured"] <= sens["claimed_ci"][1])
    assert all(rows[k]["measured"] is not None for k in ("mean_auc", "mel_auc", "sk_auc"))
    assert rows["mel_auc"]["claimed"] is None  # AUCs are claimed only from a reporting split
    assert rows["fp16_top1_agreement_onnxruntime"]["measured"] == pytest.approx(1.0)
    assert rows["fp16_top1_agreement_onnxruntime"]["claimed"] is None  # nothing claimed: reported only
    md = claims_markdown(res)
    assert "melanoma_sensitivity" in md and ("holds" in md)
    same = {r["name"]: r for r in check_bundle_claims(bundle, data, "val", backends=())["rows"]}
    assert same["melanoma_sensitivity"]["independent"] is False
    assert "not an independent check" in claims_markdown(check_bundle_claims(bundle, data, "val", backends=()))


def test_cli_eval_bundle_writes_claims_outside_the_bundle(data: Path, tmp_path: Path, capsys,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from dsedge.cli import main

    bundle = make_tiny_bundle(tmp_path / "bundle")
    fit_bundle_risk(bundle, data, "val", resamples=50)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["eval", str(bundle), "--data", str(data), "--split", "test"])
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    assert "melanoma_sensitivity" in out and "claim" in out
    written = tmp_path / "runs" / "eval-bundle-test" / "claims.json"
    assert json.loads(written.read_text())["split"] == "test"
    assert not (bundle / "claims.json").exists()


def test_a_held_out_tuning_slice_tunes_and_val_reports(tmp_path: Path) -> None:
    """With a slice of training data held out at training time, risk fits on it and claims on val:
    the claim's images and the fit's images differ, and the method says held out."""
    from dsedge.data import load_split
    from dsedge.data.splits import hold_out
    from dsedge.runtime.bundle import load_bundle

    root = make_folder_split(tmp_path / "data", {"MEL": 20, "NV": 30, "SK": 20}, seed=1)
    train = make_folder_split(tmp_path / "t", {"MEL": 40, "NV": 60, "SK": 40}, seed=2)
    (train / "val").rename(root / "train")
    _, _, record = hold_out(load_split(root, "train", classes=["MEL", "NV", "SK"]), 0.5, 0)
    bundle_dir = make_tiny_bundle(tmp_path / "bundle")
    b = load_bundle(bundle_dir)
    b.manifest["training"] = {"tuning_split": record}
    b.save()
    block = fit_bundle_risk(bundle_dir, root, "val", resamples=50)
    assert block["fitted_on"]["split"] == "tuning" and block["fitted_on"]["source"] == "holdout"
    assert block["fitted_on"]["images"] == record["n"]
    on = block["operating_point"]["measured_on"]
    assert on["split"] == "val" and on["role"] == "reporting" and on["method"] == "held out (reporting split)"
    assert on["fingerprint"] != block["fitted_on"]["fingerprint"]
    claims = load_bundle(bundle_dir).manifest["claims"]
    assert claims["melanoma_sensitivity"]["n"] == 20 and "mel_auc" in claims  # AUC claimed on the reporting split
