"""The melanoma operating point and bootstrap intervals (NumPy + scikit-learn, torch-free).

Default target sensitivity: 0.90. A referral tool must not miss melanomas more often than the
clinicians it supports: in Haenssle et al. (Ann Oncol 2018) 58 dermatologists reading dermoscopy
images reached a mean melanoma sensitivity of 86.6 % (specificity 71.3 %). 0.90 sits above that
mean while leaving a model trained on 2,000 images some specificity; 0.95 would refer most benign
lesions. Every device can set its own target (`dsedge risk --target-sensitivity`). The threshold is
the largest P(MEL) that still reaches the target on the fitting split (maximal specificity at
that sensitivity). With ISIC 2017's 30 validation melanomas one missed melanoma moves sensitivity
by 3.3 points, which is why every number carries a bootstrap 95 % interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dsedge import stats

DEFAULT_TARGET_SENSITIVITY = 0.90
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def sensitivity_specificity(positive: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    """(sensitivity, specificity) of `scores >= threshold` for a boolean `positive` array."""
    positive = np.asarray(positive, dtype=bool)
    called = np.asarray(scores) >= threshold
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    sens = float((called & positive).sum() / n_pos) if n_pos else None
    spec = float((~called & ~positive).sum() / n_neg) if n_neg else None
    return sens, spec


def choose_threshold(positive: np.ndarray, scores: np.ndarray, target: float) -> float:
    """A threshold with the best specificity whose sensitivity on these samples is >= `target`.

    It sits halfway between the last melanoma score that must be referred and the next
    lower score of any sample, not on the melanoma's score itself: on that edge, the
    1e-6 difference between PyTorch and ONNX Runtime (let alone FP16 or INT8) decided
    whether the boundary melanoma was referred (ISIC val: 90.0 % in `dsedge risk`,
    86.7 % in `dsedge eval` for the same threshold). The midpoint gives the same
    sensitivity and specificity on the fitting split with a margin on both sides.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    pos_scores = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(positive, dtype=bool)])[::-1]
    if len(pos_scores) == 0:
        raise ValueError("no positive samples to choose a threshold on")
    k = math.ceil(target * len(pos_scores) - 1e-9)  # positives that must score >= threshold
    edge = float(pos_scores[k - 1])
    below = np.asarray(scores, dtype=np.float64)
    below = below[below < edge]
    return (edge + float(below.max())) / 2 if below.size else edge


def bootstrap_ci(statistic: Callable[[np.ndarray], float | None], n: int, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, stratify: np.ndarray | None = None) -> list[float] | None:
    """Percentile 95 % interval of `statistic(indices)` over resamples of range(n) with replacement.

    `stratify` (labels) resamples within each label so rare classes (30 melanomas) never vanish
    from a resample. Resamples where the statistic is undefined (None) are skipped. The one
    bootstrap of dsedge (`dsedge.stats.bootstrap_ci`) with this module's defaults.
    """
    return stats.bootstrap_ci(statistic, n, resamples, seed, stratify)


def with_ci(value: float | None, statistic: Callable[[np.ndarray], float | None], n: int,
            stratify: np.ndarray | None = None, resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """{"value": v, "ci95": [lo, hi]} — the shape every metric with an interval has in JSON."""
    return {"value": value, "ci95": bootstrap_ci(statistic, n, resamples, stratify=stratify)}


def operating_point_report(positive: np.ndarray, scores: np.ndarray, threshold: float,
                           resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """Sensitivity and specificity at `threshold`, each with a stratified bootstrap 95 % interval."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    sens, spec = sensitivity_specificity(positive, scores, threshold)
    n = len(scores)
    return {
        "threshold": float(threshold),
        "sensitivity": with_ci(sens, lambda i: sensitivity_specificity(positive[i], scores[i], threshold)[0],
                               n, positive, resamples),
        "specificity": with_ci(spec, lambda i: sensitivity_specificity(positive[i], scores[i], threshold)[1],
                               n, positive, resamples),
        "positives": int(positive.sum()),
        "negatives": int((~positive).sum()),
    }
