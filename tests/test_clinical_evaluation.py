"""Bootstrap intervals for every eval metric and the melanoma operating point (bundle's or chosen here)."""

from __future__ import annotations

import numpy as np
import pytest

from dsedge.clinical.evaluation import bootstrap_intervals, clinical_evaluation, metric_values
from dsedge.metrics import classification_metrics, metrics_markdown

CLASSES = ["MEL", "NV", "SK"]


@pytest.fixture
def preds() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(30, int), np.ones(78, int), np.full(42, 2)]  # ISIC 2017 val counts
    logits = rng.normal(size=(150, 3)) + 1.3 * np.eye(3)[labels]
    return labels, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_metric_values_equal_classification_metrics(preds) -> None:
    labels, probs = preds
    fast, ref = metric_values(labels, probs, CLASSES), classification_metrics(labels, probs, CLASSES)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "mean_auc"):
        assert fast[key] == pytest.approx(ref[key])
    for c in CLASSES:
        for m in ("precision", "recall", "f1"):
            assert fast[f"{m}_{c}"] == pytest.approx(ref["per_class"][c][m])
        assert fast[f"auc_{c}"] == pytest.approx(ref["auc"][c])


def test_every_metric_has_an_interval_around_it(preds) -> None:
    labels, probs = preds
    values = metric_values(labels, probs, CLASSES)
    intervals = bootstrap_intervals(labels, probs, CLASSES, resamples=200)
    assert set(intervals) == set(values)
    for key, (lo, hi) in intervals.items():
        assert lo <= values[key] + 1e-9 and values[key] <= hi + 1e-9 and lo < hi, key


def test_operating_point_from_a_bundle_or_chosen_here(preds) -> None:
    labels, probs = preds
    chosen = clinical_evaluation(labels, probs, CLASSES, target_sensitivity=0.9, resamples=100)
    op = chosen["operating_point"]
    assert op["source"] == "chosen on this split" and op["sensitivity"]["value"] >= 0.9
    clinical = {"temperature": 2.0, "operating_point": {"threshold": 0.5, "target_sensitivity": 0.9}}
    stored = clinical_evaluation(labels, probs, CLASSES, clinical=clinical, resamples=100)["operating_point"]
    assert stored["source"] == "bundle" and stored["threshold"] == 0.5 and stored["temperature"] == 2.0
    md = metrics_markdown({**classification_metrics(labels, probs, CLASSES), **chosen}, "t")
    assert "Bootstrap 95 % intervals" in md and "Melanoma operating point" in md and "sensitivity (30" in md
    assert clinical_evaluation(labels % 2, probs[:, :2], ["A", "B"], resamples=20)["operating_point"] is None
