"""The operating point's sensitivity and specificity estimated out of sample (DESIGN §3a).

A threshold chosen to reach 90 % sensitivity on 30 melanomas reaches 90 % on those 30 by
construction; on unseen images the shipped model's threshold referred ~77 % of melanomas while
claiming [79.9, 100]. Two honest ways to state what the threshold will do:

* **held out**: fit on the tuning split, count hits on a reporting split it never saw;
* **cross-fitted** (when all the labelled data there is must also fit the threshold): split the
  tuning images into K stratified folds, fit temperature + threshold on K-1 folds, apply that
  threshold to the held-out fold, and pool the counts over the folds. Every image is judged by
  a threshold fitted without it, so the pooled proportion estimates what the fitting *procedure*
  achieves on unseen images; the stored threshold is then fitted on all tuning images (it uses
  ~1/K more data than each fold's, so the estimate is slightly conservative).

Either way the counts get exact (Clopper-Pearson) intervals (`dsedge.stats`), and the
threshold's own uncertainty is the spread of thresholds refitted on bootstrap resamples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dsedge.clinical.calibration import fit_temperature, softmax
from dsedge.clinical.operating_point import choose_threshold
from dsedge.stats import proportion

DEFAULT_FOLDS = 5
CROSSFIT_SEED = 0
THRESHOLD_RESAMPLES = 200


def stratified_folds(labels: np.ndarray, k: int, seed: int = CROSSFIT_SEED) -> np.ndarray:
    """A fold index in [0, k) per sample, each class spread evenly over the folds (seeded)."""
    labels = np.asarray(labels)
    fold = np.empty(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def fit_point(logits: np.ndarray, labels: np.ndarray, mel: int, target: float) -> tuple[float, float]:
    """(temperature, threshold on calibrated P(MEL)) fitted on these samples: what `dsedge risk` stores."""
    t = fit_temperature(logits, labels)
    return t, choose_threshold(labels == mel, softmax(logits, t)[:, mel], target)


def referred(logits: np.ndarray, mel: int, temperature: float, threshold: float) -> np.ndarray:
    """Boolean per sample: calibrated P(MEL) >= threshold (the device's rule, `dsedge.runtime.decision`)."""
    return softmax(logits, temperature)[:, mel] >= threshold


def counts_claim(refer: np.ndarray, positive: np.ndarray) -> dict[str, dict[str, Any]]:
    """Sensitivity and specificity as exact-interval proportions of the referral decisions."""
    refer, positive = np.asarray(refer, dtype=bool), np.asarray(positive, dtype=bool)
    return {"sensitivity": proportion(int((refer & positive).sum()), int(positive.sum())),
            "specificity": proportion(int((~refer & ~positive).sum()), int((~positive).sum()))}


def cross_fitted(logits: np.ndarray, labels: np.ndarray, mel: int, target: float,
                 k: int = DEFAULT_FOLDS, seed: int = CROSSFIT_SEED) -> dict[str, Any]:
    """Pooled out-of-fold sensitivity / specificity (exact intervals) and each fold's threshold.

    `k` drops to the number of melanomas when there are fewer (each fold needs one to fit on).
    """
    labels = np.asarray(labels, dtype=np.int64)
    positive = labels == mel
    k = int(max(2, min(k, positive.sum(), (~positive).sum())))
    fold = stratified_folds(labels, k, seed)
    refer = np.zeros(len(labels), dtype=bool)
    thresholds = []
    for f in range(k):
        fit, held = fold != f, fold == f
        t, thr = fit_point(logits[fit], labels[fit], mel, target)
        refer[held] = referred(logits[held], mel, t, thr)
        thresholds.append(thr)
    return {"method": f"{k}-fold cross-fitted", "folds": k, "seed": seed,
            "fold_thresholds": [float(x) for x in thresholds], **counts_claim(refer, positive)}


def threshold_interval(logits: np.ndarray, labels: np.ndarray, mel: int, target: float,
                       resamples: int = THRESHOLD_RESAMPLES, seed: int = CROSSFIT_SEED) -> list[float] | None:
    """Percentile 95 % interval of the refitted threshold over class-stratified bootstrap resamples.

    The threshold is a quantile of ~30 melanoma scores: how far it moves when the images move
    says how much a device maker should trust its third decimal.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
    values = []
    for _ in range(resamples):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        values.append(fit_point(logits[idx], labels[idx], mel, target)[1])
    if not values:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]
