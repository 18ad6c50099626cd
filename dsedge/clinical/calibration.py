"""Temperature scaling and calibration error (NumPy only, torch-free).

Focal loss (gamma 2) trains the model to be under-confident on easy examples, so its softmax is
not a probability a clinician can read. Temperature scaling (Guo et al. 2017) divides the logits
by one scalar T fitted on the validation split by minimising the negative log-likelihood: it keeps
every ranking (AUC, top-1, the ROC curve) and only changes how confident the numbers are, so it
cannot overfit a 150-image split the way a per-class method could. The NLL is convex in 1/T
(log-sum-exp minus a linear term), hence unimodal in log T, so a golden-section search finds the
minimum without SciPy (which the device install does not carry).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dsedge.engines.base import softmax as _softmax

ECE_BINS = 15
LOG_T_BOUNDS = (-3.0, 3.0)  # T in [0.05, 20]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) over the classes (axis 1), kept in float64 for fitting and ECE."""
    return _softmax(logits, axis=1, temperature=temperature, dtype=np.float64)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels at `temperature`."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) (bounded 1-D search over log T)."""
    if len(labels) == 0:
        raise ValueError("cannot fit a temperature on zero samples")
    return float(np.exp(_golden_min(lambda log_t: nll(logits, labels, float(np.exp(log_t))), *LOG_T_BOUNDS)))


def _golden_min(f, lo: float, hi: float, tol: float = 1e-6) -> float:  # noqa: ANN001 - a 1-D function
    """Minimiser of a unimodal `f` on [lo, hi] by golden-section search (to `tol` in x)."""
    inv_phi = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = f(d)
    return (a + b) / 2


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Top-label confidence vs accuracy in `bins` equal-width bins (empty bins left out)."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": int(mask.sum()),
                        "confidence": float(conf[mask].mean()), "accuracy": float(correct[mask].mean())})
    return out


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: the count-weighted mean |accuracy - confidence| over the reliability bins."""
    n = len(labels)
    if n == 0:
        return 0.0
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in reliability_bins(probs, labels, bins)) / n)
