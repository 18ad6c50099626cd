"""The operating point's cross-fitted claim: every image judged by a threshold fitted without it."""

from __future__ import annotations

import numpy as np
import pytest

from dsedge.clinical.crossfit import (
    cross_fitted,
    fit_point,
    referred,
    stratified_folds,
    threshold_interval,
)


def _logits(n: int, seed: int, sep: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, n, p=[0.2, 0.55, 0.25])
    return rng.normal(size=(n, 3)) + sep * np.eye(3)[labels], labels


def test_folds_are_stratified_and_cover_every_sample() -> None:
    _, labels = _logits(150, 0)
    fold = stratified_folds(labels, 5)
    assert set(fold) == set(range(5))
    for c in range(3):
        counts = np.bincount(fold[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_cross_fitted_sensitivity_is_below_the_in_sample_one_and_predicts_unseen_data() -> None:
    """In-sample the target is met by construction; out of fold it is not, and the exact interval
    of the cross-fitted count covers what the same procedure achieves on fresh images."""
    logits, labels = _logits(150, 1)
    t, thr = fit_point(logits, labels, 0, 0.9)
    in_sample = referred(logits, 0, t, thr)[labels == 0].mean()
    cf = cross_fitted(logits, labels, 0, 0.9)
    assert in_sample >= 0.9
    assert cf["sensitivity"]["n"] == int((labels == 0).sum()) and cf["folds"] == 5
    assert cf["sensitivity"]["value"] < in_sample
    fresh_logits, fresh_labels = _logits(20000, 2)
    fresh = referred(fresh_logits, 0, t, thr)[fresh_labels == 0].mean()
    lo, hi = cf["sensitivity"]["ci"]
    assert lo <= fresh <= hi
    assert len(cf["fold_thresholds"]) == 5


def test_cross_fitting_with_few_melanomas_uses_fewer_folds() -> None:
    logits, labels = _logits(60, 3)
    labels[labels == 0] = 1
    labels[:3] = 0
    assert cross_fitted(logits, labels, 0, 0.9)["folds"] == 3


def test_threshold_interval_brackets_the_fitted_threshold() -> None:
    logits, labels = _logits(150, 4)
    _, thr = fit_point(logits, labels, 0, 0.9)
    lo, hi = threshold_interval(logits, labels, 0, 0.9, resamples=100)
    assert lo <= thr <= hi and hi > lo
    assert 0 <= lo and hi <= 1


@pytest.mark.parametrize("target", [0.8, 0.95])
def test_fit_point_meets_the_target_in_sample(target: float) -> None:
    logits, labels = _logits(200, 5)
    t, thr = fit_point(logits, labels, 0, target)
    assert referred(logits, 0, t, thr)[labels == 0].mean() >= target
