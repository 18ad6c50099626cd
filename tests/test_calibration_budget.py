"""The decision-keeping INT8 budget: every term judged, reported, configurable; met only when all hold."""

from __future__ import annotations

import numpy as np
import pytest

from dsedge.calibration.budget import (
    Budget,
    OperatingPoint,
    describe,
    failed_terms,
    judge,
    mel_recall,
    mel_referrals_changed,
    met,
    operating_point,
)

REF = {"accuracy": 0.80, "mel_auc": 0.554, "mean_auc": 0.70, "mel_recall": 0.60}


def _row(**kw: float) -> dict:
    row = {"accuracy": 0.80, "acc_drop_points": 0.0, "mel_auc": 0.554, "mean_auc": 0.70, "top1_agreement": 0.995,
           "mel_recall": 0.60}
    row.update(kw)
    return row


def _terms(row: dict, budget: Budget = Budget()) -> dict[str, dict]:
    return {t["term"]: t for t in judge(row, REF, budget)}


def test_the_reported_incident_is_not_met_any_more() -> None:
    """ACC unchanged but melanoma AUC 0.554 -> 0.473 and 9.3 % flipped: the old budget said 'met'."""
    row = _row(mel_auc=0.473, top1_agreement=0.907)
    terms = judge(row, REF, Budget())
    assert not met(terms)
    assert set(failed_terms(terms)) == {"top1_agreement", "abs_delta_mel_auc"}
    assert met(judge(row, REF, Budget.legacy(0.5, None)))  # what the ACC-only budget concluded


def test_every_term_is_reported_with_value_limit_and_verdict() -> None:
    t = _terms(_row(accuracy=0.806, acc_drop_points=-0.6, mel_auc=0.550, mean_auc=0.69))
    assert set(t) == {"top1_agreement", "abs_delta_mel_auc", "abs_delta_acc_points", "abs_delta_mean_auc",
                      "mel_referrals_changed"}
    assert t["abs_delta_acc_points"]["value"] == pytest.approx(0.6) and t["abs_delta_acc_points"]["ok"] is False
    assert t["abs_delta_mel_auc"]["value"] == pytest.approx(0.004) and t["abs_delta_mel_auc"]["ok"] is True
    assert t["abs_delta_mean_auc"]["judged"] is False and t["abs_delta_mean_auc"]["value"] == pytest.approx(0.01)
    assert "abs_delta_acc_points 0.6000 (<= 0.5): FAILED" in describe(list(t.values()))
    assert "abs_delta_mean_auc 0.0100: not judged" in describe(list(t.values()))


def test_acc_is_judged_both_ways_and_legacy_only_counts_drops() -> None:
    gain = _row(accuracy=0.81, acc_drop_points=-1.0)
    assert not met(judge(gain, REF, Budget()))
    assert met(judge(gain, REF, Budget.legacy(0.5, None)))


def test_terms_can_be_switched_off_or_tightened() -> None:
    row = _row(top1_agreement=0.97, mean_auc=0.69)
    assert not met(judge(row, REF, Budget()))
    assert met(judge(row, REF, Budget(min_agreement=None)))
    assert not met(judge(row, REF, Budget(min_agreement=None, max_mean_auc_delta=0.005)))
    assert met(judge(row, REF, Budget.off()))


def test_mel_referrals_are_counted_in_images_and_tolerate_one() -> None:
    """One near-threshold melanoma must not fail the budget (it kept every group float before)."""
    assert met(judge(_row(mel_referrals_changed=1), REF, Budget()))
    two = _terms(_row(mel_referrals_changed=2))["mel_referrals_changed"]
    assert two["judged"] and two["ok"] is False and two["limit"] == 1
    assert met(judge(_row(mel_referrals_changed=0), REF, Budget(max_mel_referrals_changed=0)))
    no_point = _terms(_row(mel_referrals_changed=None))["mel_referrals_changed"]
    assert no_point["judged"] is False and no_point["ok"] is None
    # the old view-level recall term exists only when asked for
    assert "delta_mel_recall" not in _terms(_row(mel_recall=0.55))
    assert not met(judge(_row(mel_recall=0.55), REF, Budget(mel_recall_not_lower=True)))


def test_mel_referrals_changed_judges_each_image_as_captured() -> None:
    """Image-major rows, 2 views each: a flip on a rotated view does not count, one on view 0 does."""
    point = OperatingPoint(0.5)
    classes = ["MEL", "NV", "SK"]
    labels = np.repeat([0, 0, 1], 2)
    ref = np.array([[0.6, 0.4, 0], [0.6, 0.4, 0], [0.7, 0.3, 0], [0.7, 0.3, 0], [0.2, 0.8, 0], [0.2, 0.8, 0]])
    rotated_flip = ref.copy()
    rotated_flip[1] = [0.4, 0.6, 0]
    assert mel_referrals_changed(rotated_flip, ref, labels, classes, point, views=2) == 0
    captured_flip = ref.copy()
    captured_flip[2] = [0.4, 0.6, 0]
    assert mel_referrals_changed(captured_flip, ref, labels, classes, point, views=2) == 1
    benign_flip = ref.copy()
    benign_flip[4] = [0.9, 0.1, 0]
    assert mel_referrals_changed(benign_flip, ref, labels, classes, point, views=2) == 0
    assert mel_referrals_changed(ref, ref, labels, classes, None, views=2) is None


def test_operating_point_and_recall() -> None:
    """The point is dsedge's clinical block: a threshold on the temperature-calibrated melanoma probability."""
    assert operating_point({}) is None and operating_point({"clinical": {"temperature": 2.0}}) is None
    point = operating_point({"clinical": {"temperature": 2.0, "operating_point": {"class": "MEL", "threshold": 0.3}}})
    assert point == OperatingPoint(0.3, 2.0, "MEL")
    probs = np.array([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.9, 0.1, 0.0]])
    labels = np.array([0, 0, 1])
    assert mel_recall(probs, labels, ["MEL", "NV", "SK"], OperatingPoint(0.3)) == pytest.approx(0.5)
    # T = 2 flattens [0.2, 0.8, 0] to about [0.33, 0.67, 0]: now above 0.3, both melanomas referred
    assert mel_recall(probs, labels, ["MEL", "NV", "SK"], OperatingPoint(0.3, 2.0)) == pytest.approx(1.0)
    assert mel_recall(probs, labels, ["MEL", "NV", "SK"], None) is None
    assert mel_recall(probs, labels, ["NV", "BKL", "SK"], OperatingPoint(0.3)) is None
