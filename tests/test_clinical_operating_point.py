"""Melanoma threshold choice, sensitivity/specificity and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from dsedge.clinical.operating_point import (
    bootstrap_ci,
    choose_threshold,
    operating_point_report,
    sensitivity_specificity,
)


def test_threshold_reaches_the_target_with_best_specificity() -> None:
    positive = np.array([1] * 10 + [0] * 10, dtype=bool)
    scores = np.r_[np.linspace(0.95, 0.5, 10), np.linspace(0.6, 0.0, 10)]
    t = choose_threshold(positive, scores, 0.9)
    # halfway between the 9th best melanoma (9/10 = 0.9) and the next lower score of any sample
    below = scores[scores < scores[8]].max()
    assert t == pytest.approx((scores[8] + below) / 2) and below < t < scores[8]
    sens, spec = sensitivity_specificity(positive, scores, t)
    assert sens == pytest.approx(0.9) and spec == pytest.approx(0.9)  # the 0.6 negative is above 0.55
    assert sensitivity_specificity(positive, scores, scores[8] + 1e-9)[0] < 0.9  # above the edge misses it
    t_all = choose_threshold(positive, scores, 1.0)  # every melanoma: below the lowest (0.5)
    assert sensitivity_specificity(positive, scores, t_all)[0] == 1.0 and t_all < 0.5


def test_thirty_melanomas_like_isic_val() -> None:
    rng = np.random.default_rng(1)
    positive = np.r_[np.ones(30, bool), np.zeros(120, bool)]
    scores = np.r_[rng.beta(5, 2, 30), rng.beta(2, 5, 120)]
    report = operating_point_report(positive, scores, choose_threshold(positive, scores, 0.9), resamples=300)
    sens = report["sensitivity"]
    assert sens["value"] >= 0.9 and report["positives"] == 30 and report["negatives"] == 120
    lo, hi = sens["ci95"]
    assert lo < sens["value"] <= hi and hi - lo > 0.05  # 30 positives: a wide interval, honestly reported
    lo, hi = report["specificity"]["ci95"]
    assert 0 <= lo <= report["specificity"]["value"] <= hi <= 1


def test_bootstrap_skips_undefined_resamples_and_is_seeded() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0])
    a = bootstrap_ci(lambda i: float(values[i].mean()), 4, resamples=200)
    assert a == bootstrap_ci(lambda i: float(values[i].mean()), 4, resamples=200)
    assert 0 <= a[0] < 1.5 < a[1] <= 3
    assert bootstrap_ci(lambda i: None, 4, resamples=10) is None
    assert bootstrap_ci(lambda i: 1.0, 0) is None


def test_invalid_targets() -> None:
    with pytest.raises(ValueError):
        choose_threshold(np.array([True]), np.array([0.5]), 0.0)
    with pytest.raises(ValueError):
        choose_threshold(np.array([False]), np.array([0.5]), 0.9)
