"""dsedge.comparator: agreement, flips, diffs, non-finite rows and metric deltas on known arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsedge.comparator import DELTA_METRICS, agreement, compare, delta
from dsedge.metrics import classification_metrics

CLASSES = ["MEL", "NV", "SK"]


def test_agreement_of_probabilities() -> None:
    ref = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])
    other = np.array([[0.8, 0.2], [0.7, 0.3], [0.5, 0.5]])
    a = agreement(ref, other)
    assert a["top1_agreement"] == pytest.approx(2 / 3)
    assert a["max_abs_prob_diff"] == pytest.approx(0.3)
    assert a["mean_abs_prob_diff"] == pytest.approx(np.abs(ref - other).mean())
    c = compare(ref, other)
    assert c.flips == 1 and c.n == 3 and c.nonfinite_outputs == 0
    assert c.max_abs_logit_diff is None and c.metrics is None and c.deltas == {}


def test_logits_give_logit_and_probability_diffs() -> None:
    ref = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    other = ref + np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]], np.float32)
    c = compare(ref, other, logits=True)
    assert c.top1_agreement == 1.0 and c.flips == 0
    assert c.max_abs_logit_diff == pytest.approx(0.5) and c.mean_abs_logit_diff == pytest.approx(0.5 / 6)
    e = np.exp([2.0, 0.0, 0.0])
    e2 = np.exp([2.0, 0.0, 0.5])
    expected = np.abs(e / e.sum() - e2 / e2.sum()).max()
    assert c.max_abs_prob_diff == pytest.approx(expected, rel=1e-5)


def test_nonfinite_rows_disagree_and_void_the_diffs() -> None:
    ref = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]], np.float32)
    c = compare(ref, np.array([[np.nan, 0, 0], [3.0, 0.0, 0.0]], np.float32), logits=True)
    assert c.nonfinite_outputs == 1 and c.flips == 1 and c.top1_agreement == 0.5
    assert c.max_abs_prob_diff is None and c.max_abs_logit_diff is None
    json.dumps(c.agreement(), allow_nan=False)
    inf = compare(ref, np.array([[0.0, np.inf, 0.0], [3.0, 0.0, 0.0]], np.float32), logits=True)
    assert inf.nonfinite_outputs == 1 and inf.top1_agreement == 0.5  # the argmax matches, the row still counts


def test_empty_and_mismatched_inputs() -> None:
    empty = compare(np.zeros((0, 3)), np.zeros((0, 3)))
    assert empty.agreement() == {"top1_agreement": 1.0, "max_abs_prob_diff": 0.0, "mean_abs_prob_diff": 0.0}
    with pytest.raises(ValueError, match="one shape"):
        compare(np.zeros((2, 3)), np.zeros((3, 3)))


def test_metric_deltas_with_labels() -> None:
    labels = np.array([0, 1, 2, 0])
    ref = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    other = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.2, 0.7, 0.1]])  # last MEL -> NV
    c = compare(ref, other, labels=labels, classes=CLASSES)
    assert c.flips == 1 and c.top1_agreement == 0.75
    assert c.reference_metrics["accuracy"] == 1.0 and c.metrics["accuracy"] == 0.75
    assert c.deltas["accuracy"] == pytest.approx(-0.25)
    assert set(c.deltas) == set(DELTA_METRICS)
    want = classification_metrics(labels, other, CLASSES)["mel_auc"] - 1.0
    assert c.deltas["mel_auc"] == pytest.approx(want)
    stored = {"accuracy": 0.5, "balanced_accuracy": 0.5, "mel_auc": None, "sk_auc": 1.0, "mean_auc": None}
    reused = compare(ref, other, labels=labels, classes=CLASSES, reference_metrics=stored)
    assert reused.deltas["accuracy"] == pytest.approx(0.25) and reused.deltas["mel_auc"] is None
    with pytest.raises(ValueError, match="class names"):
        compare(ref, other, labels=labels)


def test_delta() -> None:
    assert delta(0.75, 0.5) == 0.25 and delta(None, 0.5) is None and delta(0.5, None) is None


def test_agreement_interval_resamples_groups_not_rows() -> None:
    from dsedge.comparator import agreement_interval

    rng = np.random.default_rng(1)
    ref = rng.random((400, 3))
    assert agreement_interval(ref, ref) == (1.0, 1.0, 1.0)
    other = ref.copy()
    other[:8] = np.roll(ref[:8], 1, axis=1)  # 8 disagreeing rows...
    assert (ref[:8].argmax(1) != other[:8].argmax(1)).all()
    groups = np.repeat(np.arange(50), 8)  # ...all views of the first of 50 images
    point, lo, hi = agreement_interval(ref, other, groups)
    assert point == pytest.approx(392 / 400)
    _, lo_rows, hi_rows = agreement_interval(ref, other)
    assert lo < lo_rows < point < hi_rows <= hi == 1.0  # clustered flips: a wider, honest interval
    assert agreement_interval(ref, other, groups, seed=3) == agreement_interval(ref, other, groups, seed=3)
    with pytest.raises(ValueError, match="groups"):
        agreement_interval(ref, other, groups[:10])
