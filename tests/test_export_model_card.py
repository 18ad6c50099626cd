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
