"""Temperature scaling and ECE: recovers a known temperature, lowers the calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from dsedge.clinical.calibration import (
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)


def overconfident(n: int = 3000, true_t: float = 2.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the model reports z * true_t (over-confident by true_t)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 3))
    p = softmax(z)
    labels = np.array([rng.choice(3, p=row) for row in p])
    return z * true_t, labels


def test_fit_recovers_the_temperature_and_lowers_ece() -> None:
    logits, labels = overconfident()
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, t), labels)
    assert after < 0.03 < before and nll(logits, labels, t) < nll(logits, labels)


def test_temperature_keeps_the_ranking() -> None:
    logits, _ = overconfident(200)
    assert (softmax(logits, 3.0).argmax(1) == logits.argmax(1)).all()


def test_reliability_bins_hand_checked() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    labels = np.array([0, 1, 0, 1])
    bins = reliability_bins(probs, labels, bins=10)
    assert [b["count"] for b in bins] == [1, 1, 2]
    assert bins[-1]["accuracy"] == 0.5 and bins[-1]["confidence"] == pytest.approx(0.9)
    # ECE = (1*|1-0.6| + 1*|1-0.7| + 2*|0.5-0.9|) / 4
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx((0.4 + 0.3 + 0.8) / 4)


def test_empty_input() -> None:
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros(0)) == 0.0
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((0, 3)), np.zeros(0))


def test_fit_matches_a_dense_grid_search() -> None:
    logits, labels = overconfident(500, true_t=0.6, seed=2)  # under-confident: T < 1
    grid = np.exp(np.linspace(-3, 3, 6001))
    best = grid[np.argmin([nll(logits, labels, t) for t in grid])]
    assert fit_temperature(logits, labels) == pytest.approx(best, rel=2e-3)
    assert fit_temperature(logits, labels) < 1
