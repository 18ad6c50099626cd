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
