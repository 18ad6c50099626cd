"""MODEL_CARD.md from a manifest: training summary, fitted operating point with intervals, limitations."""

from __future__ import annotations

from dsedge.export.model_card import render_model_card, training_summary

META = {"model": "ds_resnet50", "epoch": 42, "config": {"epochs": 100, "lr": 5e-4, "device": "cpu"},
        "metrics": {"accuracy": 0.78, "balanced_accuracy": 0.7, "mel_auc": 0.81, "sk_auc": 0.9, "mean_auc": 0.855},
        "data_fingerprint": "abc123", "val_fingerprint": "def456", "focal_alpha": [0.3, 0.1, 0.6]}
CLINICAL = {"temperature": 1.8, "uncertain_margin": 0.15, "uncertain_rate": 0.12,
            "calibration": {"ece_before": 0.11, "ece_after": 0.04},
            "operating_point": {"class": "MEL", "threshold": 0.2345, "target_sensitivity": 0.9,
                                "sensitivity": {"value": 0.9, "ci95": [0.8, 1.0]},
                                "specificity": {"value": 0.6, "ci95": [0.5, 0.7]}, "positives": 30, "negatives": 120},
            "fitted_on": {"split": "val", "data": "isic2017", "images": 150, "artifact": "model.onnx"}}


def manifest(**extra) -> dict:
    return {"model": {"name": "ds_resnet50", "checkpoint": "best.safetensors", "checkpoint_sha256": "f" * 64},
            "classes": ["MEL", "NV", "SK"], "input": {"shape": ["N", 3, 224, 224]}, "preprocessing": {},
            "artifacts": {"model.onnx": {"kind": "onnx", "precision": "fp32"}},
            "parity": {"artifacts": {"model.onnx": {"top1_agreement": 1.0}}},
            "training": training_summary(META), **extra}


def test_training_summary_keeps_what_the_card_needs() -> None:
    t = training_summary(META)
    assert t["epoch"] == 42 and t["config"] == {"epochs": 100, "lr": 5e-4} and t["metrics"]["mel_auc"] == 0.81
    assert training_summary({}) == {"random_init": True}


def test_card_with_and_without_a_fitted_operating_point() -> None:
    unfitted = render_model_card(manifest())
    assert "Not fitted" in unfitted and "epoch 42" in unfitted and "| 78.0 % |" in unfitted
    card = render_model_card(manifest(clinical=CLINICAL))
    assert "P(MEL) >= 0.2345" in card and "90.0 % (95 % CI 80.0 % – 100.0 %)" in card
    assert "T = 1.800" in card and "0.110 -> 0.040" in card and "Not fitted" not in card
    assert "**Warning:** bound" in render_model_card(manifest(clinical={**CLINICAL, "warnings": ["bound"]}))
    for section in ("## Intended use", "## Input quality checks", "## Limitations and risks", "## Artifacts"):
        assert section in card


def test_card_states_status_licence_and_data_without_local_paths() -> None:
    meta = {**META, "config": {**META["config"], "extra_train": ["/home/alice/data/ham10000/labels.csv"]},
            "data": "/home/alice/data/isic2017"}
    t = training_summary(meta)
    assert [d["name"] for d in t["datasets"]] == ["isic2017", "ham10000"]
    assert "CC BY-NC 4.0 (HAM10000)" in t["licence"] and t["licence"].startswith("non-commercial use only")
    clinical = {**CLINICAL, "fitted_on": {**CLINICAL["fitted_on"], "data": "/home/alice/data/isic2017",
                                          "fingerprint": "0123456789abcdef99"}}
    card = render_model_card({**manifest(clinical=clinical), "training": t})
    assert "/home/alice" not in card
    assert "**Not a medical device.**" in card and "CC BY-NC 4.0 (HAM10000)" in card
    assert "isic2017 (train + validation); ham10000 (extra train)" in card
    assert "of `isic2017` (150 images, fingerprint `0123456789abcdef`)" in card
    assert "in-sample" in card  # the claims come from the split the threshold was fitted on


def test_unknown_data_licence_is_said_and_independent_claims_carry_no_in_sample_warning() -> None:
    t = training_summary({**META, "data": "/x/clinic_photos"})
    assert "unknown for clinic_photos" in t["licence"]
    held_out = {"class": "MEL", "threshold": 0.3,
                "sensitivity": {"value": 0.85, "ci": [0.7, 0.95], "split": "test", "method": "bootstrap", "n": 117},
                "specificity": {"value": 0.7, "ci": [0.6, 0.8], "split": "test"}}
    card = render_model_card(manifest(clinical={**CLINICAL, "operating_point": held_out}))
    assert "in-sample" not in card and "85.0 % (95 % CI 70.0 % – 95.0 %)" in card


def test_heatmap_resolution_comes_from_the_cam_output() -> None:
    cam = {"outputs": [{"name": "logits"}, {"name": "cam", "shape": ["batch", 3, 4, 4]}]}
    assert "at 4x4 resolution" in render_model_card(manifest(**cam))
    assert "7x7" not in render_model_card(manifest(**cam))
    assert "exported without the `cam` output" in render_model_card(manifest())


def test_refresh_model_card_rewrites_it_from_the_manifest(tmp_path) -> None:  # noqa: ANN001
    from tiny_bundle import make_tiny_bundle

    from dsedge.bundle import load_bundle
    from dsedge.export.model_card import MODEL_CARD_FILE, refresh_model_card

    root = make_tiny_bundle(tmp_path / "b")
    b = load_bundle(root)
    b.manifest["clinical"] = CLINICAL
    b.save()
    path = refresh_model_card(root)
    assert path == root / MODEL_CARD_FILE and "P(MEL) >= 0.2345" in path.read_text()
    assert MODEL_CARD_FILE in load_bundle(root, verify=True).artifacts  # listed with its new sha256
