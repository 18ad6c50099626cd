"""Exact intervals for small counts (DESIGN §3a): the one place dsedge turns k of n into a claim.

A melanoma sensitivity measured on 30 melanomas is a binomial proportion with 30 trials: one
image moves it 3.3 points and a percentile bootstrap is too narrow near 100 % (27 of 30: bootstrap
79.9-100 %, exact 73.5-97.9 %). Every proportion a bundle claims (sensitivity, specificity, INT8
agreement) therefore carries a Clopper-Pearson interval (scipy's `binomtest(...).proportion_ci`),
which never undercovers. Torch-free; SciPy comes with the workstation install, and the device only
reads the stored numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import numpy as np

CONFIDENCE = 0.95


def exact_ci(k: int, n: int, confidence: float = CONFIDENCE) -> list[float] | None:
    """Clopper-Pearson interval of k successes in n trials ([lo, hi]); None when n == 0."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return [float(ci.low), float(ci.high)]


def proportion(k: int, n: int, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """{"value", "k", "n", "ci", "interval"}: a proportion as every claim stores it."""
    return {"value": (k / n) if n else None, "k": int(k), "n": int(n), "ci": exact_ci(k, n, confidence),
            "interval": f"Clopper-Pearson {100 * confidence:.0f} %"}


def clustered_ci(hits_per_cluster: list[int] | Any, sizes: list[int] | Any,
                 confidence: float = CONFIDENCE) -> list[float] | None:
    """An interval for a proportion over correlated trials (the 8 views of one image move together).

    The effective number of independent trials is n / design effect, with the design effect
    estimated from the between-cluster variance (Kish); the exact interval is then taken at the
    effective k and n. With independent views this equals `exact_ci`; with views that always
    agree it is the interval over images.
    """
    import numpy as np

    hits = np.asarray(hits_per_cluster, dtype=np.float64)
    size = np.asarray(sizes, dtype=np.float64)
    n = float(size.sum())
    if n <= 0:
        return None
    p = float(hits.sum() / n)
    m = float(size.mean())
    if len(size) > 1 and 0.0 < p < 1.0 and m > 1:
        rates = hits / size
        between = float(np.var(rates, ddof=1))
        within = p * (1 - p) / m
        icc = max(0.0, min(1.0, (between - within) / (p * (1 - p)) if p * (1 - p) else 0.0))
        deff = 1.0 + (m - 1.0) * icc
    else:
        deff = m if p in (0.0, 1.0) and m > 1 else 1.0  # no information about correlation: assume the worst
    n_eff = max(1, round(n / deff))
    k_eff = min(n_eff, max(0, round(p * n_eff)))
    return exact_ci(k_eff, n_eff, confidence)


def softmax(
    logits: np.ndarray, axis: int = -1, *, temperature: float = 1.0, dtype: type[np.floating] = np.float32
) -> np.ndarray:
    """Numerically stable softmax of `logits / temperature`, computed in float64.

    The result is cast to `dtype`: float32 by default (runners, bench, comparator);
    float64 where the probabilities feed further arithmetic (temperature fitting,
    ECE, the clinical decision layer). Dividing by the default temperature 1.0 is
    exact, so a plain softmax is unchanged by it.
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(dtype, copy=False)


# ----------------------------------------------------------------------------- the one bootstrap


def resample_indices(n: int, resamples: int, seed: int, stratify: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Index arrays of `resamples` bootstrap resamples of range(n), with replacement, from one seeded RNG.

    `stratify` (labels) resamples within each label, so rare classes (30 melanomas) never vanish from
    a resample. Every bootstrap in dsedge draws through here (operating point, clinical intervals,
    INT8 agreement), so one seed means one sequence of resamples wherever it is used.
    """
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(stratify == g) for g in np.unique(stratify)] if stratify is not None else [np.arange(n)]
    for _ in range(resamples):
        yield np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])


def percentile_interval(values: Any, level: float = CONFIDENCE) -> list[float] | None:
    """[low, high]: the central `level` percentile interval of the defined, finite `values` (None if none)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return None
    tail = 50.0 * float(Decimal(1) - Decimal(str(level)))  # 2.5 exactly for 0.95 (float 1 - 0.95 is not 0.05)
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def bootstrap_ci(statistic: Callable[[np.ndarray], Any], n: int, resamples: int, seed: int,
                 stratify: np.ndarray | None = None, level: float = CONFIDENCE) -> list[float] | None:
    """Percentile interval of `statistic(indices)` over resamples (see `resample_indices`); None when n == 0
    or the statistic is never defined. Resamples where it is None or not finite are skipped."""
    if n == 0:
        return None
    return percentile_interval((statistic(idx) for idx in resample_indices(n, resamples, seed, stratify)), level)
