"""Exact intervals: the numbers every claim's interval comes from."""

from __future__ import annotations

import numpy as np
import pytest

from dsedge.stats import clustered_ci, exact_ci, proportion


def test_exact_ci_matches_the_issue_example_and_is_wider_than_bootstrap() -> None:
    lo, hi = exact_ci(27, 30)
    assert lo == pytest.approx(0.7347, abs=1e-4) and hi == pytest.approx(0.9789, abs=1e-4)
    assert exact_ci(30, 30)[1] == 1.0 and exact_ci(0, 30)[0] == 0.0
    assert exact_ci(0, 0) is None
    with pytest.raises(ValueError):
        exact_ci(31, 30)


def test_proportion_carries_counts_and_interval_name() -> None:
    p = proportion(27, 30)
    assert p["value"] == pytest.approx(0.9) and (p["k"], p["n"]) == (27, 30)
    assert p["ci"] == exact_ci(27, 30) and "Clopper-Pearson" in p["interval"]


def test_clustered_interval_widens_when_views_move_together() -> None:
    images = 150
    independent = exact_ci(1188, 1200)
    # 12 disagreements spread over 12 images vs all 8 views of 1.5 images
    spread = clustered_ci([7] * 12 + [8] * (images - 12), [8] * images)
    lumped = clustered_ci([0] + [4] + [8] * (images - 2), [8] * images)
    assert spread[0] == pytest.approx(independent[0], abs=0.003)
    assert lumped[0] < spread[0]  # fewer effective trials: a wider interval
    perfect = clustered_ci([8] * images, [8] * images)
    assert perfect == exact_ci(images, images)  # worst case: the views count as one image


def test_exact_ci_covers_at_least_95_percent() -> None:
    """Simulated coverage at p = 0.8, n = 30 (the melanoma count of ISIC 2017 val)."""
    rng = np.random.default_rng(0)
    ks = rng.binomial(30, 0.8, 2000)
    cover = np.mean([lo <= 0.8 <= hi for lo, hi in (exact_ci(int(k), 30) for k in ks)])
    assert cover >= 0.95


def test_one_bootstrap_serves_the_operating_point_the_clinical_intervals_and_agreement() -> None:
    """Issue 24: the four bootstraps draw through `resample_indices`; same seed, same resamples everywhere."""
    import numpy as np

    from dsedge.clinical.operating_point import bootstrap_ci
    from dsedge.comparator import agreement_interval
    from dsedge.stats import percentile_interval, resample_indices

    labels = np.array([0] * 5 + [1] * 20)
    first = next(resample_indices(25, 1, seed=3, stratify=labels))
    assert sorted(np.bincount(labels[first])) == [5, 20]  # stratified: class sizes kept
    plain = np.random.default_rng(3)
    expected = [plain.choice(np.arange(10), size=10, replace=True) for _ in range(4)]
    assert all((a == b).all() for a, b in zip(resample_indices(10, 4, seed=3), expected, strict=True))
    assert percentile_interval([None, float("nan"), 1.0, 3.0]) == [1.05, 2.95]
    assert percentile_interval([None]) is None
    values = np.arange(25.0)
    assert bootstrap_ci(lambda idx: float(values[idx].mean()), 25, resamples=50, seed=0) == \
        percentile_interval(values[idx].mean() for idx in resample_indices(25, 50, seed=0))
    ref = np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1]]
    out = np.eye(3)[[0, 1, 2, 0, 1, 2, 1, 0]]
    agree, low, high = agreement_interval(ref, out, resamples=200, seed=0)
    rows = (ref.argmax(1) == out.argmax(1)).astype(float)
    assert agree == 0.75 and [low, high] == percentile_interval(
        rows[idx].mean() for idx in resample_indices(8, 200, seed=0))
