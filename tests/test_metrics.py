"""classification_metrics against scikit-learn on fixed fixtures (agreement: tests/test_comparator.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from dsedge.metrics import classification_metrics, metrics_markdown

CLASSES = ["MEL", "NV", "SK"]


@pytest.fixture
def fixture_preds() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    labels = rng.integers(0, 3, size=60)
    logits = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[labels]  # informative but imperfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def test_metrics_equal_sklearn(fixture_preds):
    labels, probs = fixture_preds
    pred = probs.argmax(1)
    m = classification_metrics(labels, probs, CLASSES)
    assert m["n"] == 60
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, pred))
    assert m["confusion_matrix"] == confusion_matrix(labels, pred).tolist()
    p = precision_score(labels, pred, average=None)
    r = recall_score(labels, pred, average=None)
    f = f1_score(labels, pred, average=None)
    for i, c in enumerate(CLASSES):
        assert m["per_class"][c]["precision"] == pytest.approx(p[i])
        assert m["per_class"][c]["recall"] == pytest.approx(r[i])
        assert m["per_class"][c]["f1"] == pytest.approx(f[i])
        assert m["per_class"][c]["support"] == int((labels == i).sum())
        assert m["auc"][c] == pytest.approx(roc_auc_score(labels == i, probs[:, i]))
    assert m["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert m["mel_auc"] == pytest.approx(roc_auc_score(labels == 0, probs[:, 0]))
    assert m["sk_auc"] == pytest.approx(roc_auc_score(labels == 2, probs[:, 2]))
    assert m["mean_auc"] == pytest.approx((m["mel_auc"] + m["sk_auc"]) / 2)


def test_hand_checked_tiny_case():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1],
                      [0.1, 0.6, 0.3], [0.3, 0.1, 0.6], [0.1, 0.2, 0.7]])
    m = classification_metrics(labels, probs, CLASSES)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["per_class"]["MEL"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["NV"]["precision"] == pytest.approx(2 / 3)
    assert m["auc"]["MEL"] == pytest.approx(7 / 8)  # 0.2 (a melanoma) ranks below one 0.3


def test_missing_class_gives_no_auc():
    labels = np.array([1, 1, 2, 2])
    probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    m = classification_metrics(labels, probs, CLASSES)
    assert m["auc"]["MEL"] is None and m["mel_auc"] is None
    assert m["mean_auc"] == pytest.approx(np.mean([m["auc"]["NV"], m["auc"]["SK"]]))
    assert m["per_class"]["MEL"]["support"] == 0


def test_markdown_table(fixture_preds):
    labels, probs = fixture_preds
    m = classification_metrics(labels, probs, CLASSES)
    md = metrics_markdown(m, "val")
    assert md.startswith("## val")
    for c in CLASSES:
        assert f"| {c} | {100 * m['per_class'][c]['precision']:.2f} |" in md
    assert f"| ACC % | {100 * m['accuracy']:.2f} |" in md
    assert f"| mean AUC (MEL, SK) | {m['mean_auc']:.4f} |" in md
