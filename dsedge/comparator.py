"""One comparator: how far a model's outputs are from a reference's (Polygraphy's Comparator, for classifiers).

Export parity (`export/manifest.py`), the INT8 budget search (`calibration/sensitivity.py`,
`calibration/budget.py`) and the bench's accuracy block (`bench/accuracy.py`) all ask the same
question: does this artifact still give the reference's answers? They ask it here, so a flip, a
non-finite output or a metric delta means the same thing in a manifest, a calibration report and
a bench table.

For two N x C arrays (logits or probabilities) :func:`compare` gives top-1 agreement, the number of
flips, max and mean |prob diff| (and |logit diff| for logits) and the number of non-finite rows;
with labels also every metric of both sides (`dsedge.metrics`) and the deltas of ACC, balanced ACC,
MEL AUC, SK AUC and mean AUC. A non-finite row (float16 overflow) counts as a disagreement and
makes the diffs None, so JSON written from it stays strict. Torch-free; NumPy only at import
(scikit-learn is imported only when labels are given).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dsedge.stats import percentile_interval, resample_indices, softmax

#: The metrics whose deltas (other minus reference) a comparison with labels reports.
DELTA_METRICS = ("accuracy", "balanced_accuracy", "mel_auc", "sk_auc", "mean_auc")


def delta(value: float | None, reference: float | None) -> float | None:
    """`value - reference`, or None when either is missing (e.g. no MEL AUC on a split without melanomas)."""
    return None if value is None or reference is None else float(value - reference)


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` measured; `metrics` / `reference_metrics` / `deltas` only with labels."""

    n: int
    top1_agreement: float
    flips: int
    nonfinite_outputs: int
    max_abs_prob_diff: float | None
    mean_abs_prob_diff: float | None
    max_abs_logit_diff: float | None = None
    mean_abs_logit_diff: float | None = None
    metrics: dict[str, Any] | None = None
    reference_metrics: dict[str, Any] | None = None
    deltas: dict[str, float | None] = field(default_factory=dict)

    def agreement(self) -> dict[str, float | None]:
        """The agreement block bench rows and reports read (`top1_agreement`, max/mean |prob diff|)."""
        return {"top1_agreement": self.top1_agreement, "max_abs_prob_diff": self.max_abs_prob_diff,
                "mean_abs_prob_diff": self.mean_abs_prob_diff}


def _abs_diff(a: np.ndarray, b: np.ndarray, ok: bool) -> tuple[float | None, float | None]:
    """(max, mean) of |a - b| in float64; None when a row is non-finite, 0.0 for empty arrays."""
    if not ok:
        return None, None
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return (float(diff.max()), float(diff.mean())) if diff.size else (0.0, 0.0)


def _check(reference: np.ndarray, other: np.ndarray) -> None:
    if reference.ndim != 2 or reference.shape != other.shape:
        raise ValueError(f"compare needs two N x C arrays of one shape, got {reference.shape} and {other.shape}")


def compare(
    reference: np.ndarray,
    other: np.ndarray,
    *,
    logits: bool = False,
    labels: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    reference_metrics: dict[str, Any] | None = None,
) -> Comparison:
    """Compare `other` with `reference` (N x C; logits when `logits`, else probabilities).

    With `labels` (N integers) and `classes`, both sides are scored with
    `dsedge.metrics.classification_metrics`; pass `reference_metrics` to reuse the
    reference's scores (the INT8 search compares many candidates with one reference).
    """
    ref, out = np.asarray(reference), np.asarray(other)
    _check(ref, out)
    finite = np.isfinite(ref).all(axis=1) & np.isfinite(out).all(axis=1)
    same = (ref.argmax(axis=1) == out.argmax(axis=1)) & finite  # a non-finite row disagrees
    n, bad = len(ref), int((~finite).sum())
    if logits and (bad == 0 or labels is not None):  # softmax of a NaN/inf row only warns
        p_ref, p_out = softmax(ref), softmax(out)
    else:
        p_ref, p_out = ref, out
    max_p, mean_p = _abs_diff(p_ref, p_out, bad == 0)
    max_l, mean_l = _abs_diff(ref, out, bad == 0) if logits else (None, None)
    result = Comparison(n=n, top1_agreement=float(same.mean()) if n else 1.0, flips=int(n - same.sum()),
                        nonfinite_outputs=bad, max_abs_prob_diff=max_p, mean_abs_prob_diff=mean_p,
                        max_abs_logit_diff=max_l, mean_abs_logit_diff=mean_l)
    if labels is None:
        return result
    return _with_metrics(result, p_ref, p_out, labels, classes, reference_metrics)


def _with_metrics(
    result: Comparison,
    p_ref: np.ndarray,
    p_out: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str] | None,
    reference_metrics: dict[str, Any] | None,
) -> Comparison:
    """`result` plus both sides' classification metrics and their deltas."""
    from dsedge.metrics import classification_metrics

    if classes is None:
        raise ValueError("compare with labels needs the class names (classes=...)")
    names = list(classes)
    mine = classification_metrics(labels, p_out, names)
    ref = reference_metrics if reference_metrics is not None else classification_metrics(labels, p_ref, names)
    deltas = {k: delta(mine.get(k), ref.get(k)) for k in DELTA_METRICS}
    return Comparison(**{**result.__dict__, "metrics": mine, "reference_metrics": ref, "deltas": deltas})


def agreement(reference_probs: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """How closely probabilities follow the reference's: `compare(...).agreement()` for callers that want the dict."""
    return compare(reference_probs, probs).agreement()


def agreement_interval(reference: np.ndarray, other: np.ndarray, groups: np.ndarray | None = None, *,
                       resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(agreement, low, high): top-1 agreement with a percentile bootstrap interval.

    `groups` (N ids) makes it a cluster bootstrap: rows of one group (the views of one image) are
    resampled together, because they are not independent. Without groups every row is its own.
    With no disagreement at all the interval is (1, 1): the bootstrap cannot see a rarer event
    than the sample holds, so report the count of rows beside it.
    """
    ref, out = np.asarray(reference), np.asarray(other)
    _check(ref, out)
    same = ((ref.argmax(axis=1) == out.argmax(axis=1)) & np.isfinite(ref).all(1) & np.isfinite(out).all(1))
    ids = np.arange(len(same)) if groups is None else np.asarray(groups)
    if len(ids) != len(same):
        raise ValueError(f"groups has {len(ids)} entries for {len(same)} rows")
    uniq, inverse = np.unique(ids, return_inverse=True)
    hits = np.bincount(inverse, weights=same.astype(np.float64), minlength=len(uniq))
    sizes = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    boot = [hits[idx].sum() / sizes[idx].sum() for idx in resample_indices(len(uniq), resamples, seed)]
    low, high = percentile_interval(boot, level) or (float("nan"), float("nan"))
    return float(same.mean()), float(low), float(high)
