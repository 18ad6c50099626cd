"""What `dsedge eval` adds for clinicians: bootstrap 95 % intervals for every metric and the melanoma
operating point (sensitivity / specificity, ROC with the point marked).

With 150 validation images (30 melanomas) a point value alone misleads: the intervals come from
1,000 class-stratified bootstrap resamples (seeded, so a report is reproducible). The operating
point is either a bundle's stored one (`--bundle`: temperature + threshold fitted by `dsedge risk`,
the honest way to report a test split) or, without a bundle, chosen on the evaluated split itself
for the target sensitivity (then the report says so: it is optimistic by construction).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from dsedge.clinical.calibration import expected_calibration_error, softmax
from dsedge.clinical.operating_point import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    DEFAULT_TARGET_SENSITIVITY,
    choose_threshold,
    operating_point_report,
)
from dsedge.runtime.decision import MELANOMA


def metric_values(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float | None]:
    """Flat metrics of one (re)sample: accuracy, balanced accuracy, macro F1, per-class P/R/F1/AUC, mean AUC."""
    pred = probs.argmax(axis=1)
    out: dict[str, float | None] = {"accuracy": float((pred == labels).mean())}
    recalls, f1s, aucs = [], [], {}
    for i, c in enumerate(classes):
        tp = float(((pred == i) & (labels == i)).sum())
        support, called = float((labels == i).sum()), float((pred == i).sum())
        p = tp / called if called else 0.0
        r = tp / support if support else None
        f1 = 2 * p * (r or 0.0) / (p + (r or 0.0)) if p + (r or 0.0) else 0.0
        out.update({f"precision_{c}": p, f"recall_{c}": r, f"f1_{c}": f1})
        if r is not None:
            recalls.append(r)
        f1s.append(f1)
        pos = labels == i
        aucs[c] = float(roc_auc_score(pos, probs[:, i])) if 0 < pos.sum() < len(pos) else None
        out[f"auc_{c}"] = aucs[c]
    out["balanced_accuracy"] = float(np.mean(recalls)) if recalls else None
    out["macro_f1"] = float(np.mean(f1s))
    mel, sk = aucs.get("MEL"), aucs.get("SK")
    defined = [mel, sk] if mel is not None and sk is not None else [v for v in aucs.values() if v is not None]
    out["mean_auc"] = float(np.mean(defined)) if defined else None  # as `classification_metrics` defines it
    return out


def bootstrap_intervals(labels: np.ndarray, probs: np.ndarray, classes: list[str],
                        resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, list[float] | None]:
    """Percentile 95 % interval of every `metric_values` key over class-stratified resamples."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
    samples: dict[str, list[float]] = {}
    for _ in range(resamples):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        for k, v in metric_values(labels[idx], probs[idx], classes).items():
            if v is not None:
                samples.setdefault(k, []).append(v)
    keys = metric_values(labels, probs, classes).keys()
    return {k: ([float(x) for x in np.percentile(samples[k], [2.5, 97.5])] if samples.get(k) else None) for k in keys}


def clinical_evaluation(labels: np.ndarray, probs: np.ndarray, classes: list[str], *,
                        clinical: dict[str, Any] | None = None,
                        target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """`intervals` for every metric, ECE, and the melanoma `operating_point` block (None without MEL)."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    out: dict[str, Any] = {"intervals": bootstrap_intervals(labels, probs, classes, resamples),
                           "bootstrap": {"resamples": resamples, "seed": BOOTSTRAP_SEED, "stratified": True},
                           "ece": expected_calibration_error(probs, labels), "operating_point": None}
    if MELANOMA not in classes:
        return out
    mel = classes.index(MELANOMA)
    positive = labels == mel
    if positive.all() or not positive.any():
        return out
    point = (clinical or {}).get("operating_point") or {}
    if point.get("threshold") is not None:
        t = float(clinical.get("temperature", 1.0))
        cal = softmax(np.log(np.clip(probs, 1e-12, 1.0)), t)  # log-probs are logits up to a per-row constant
        threshold, source = float(point["threshold"]), "bundle"
        out["ece_calibrated"] = expected_calibration_error(cal, labels)
    else:
        cal, t = probs, 1.0
        threshold, source = choose_threshold(positive, probs[:, mel], target_sensitivity), "chosen on this split"
    report = operating_point_report(positive, cal[:, mel], threshold, resamples)
    out["operating_point"] = {"class": MELANOMA, "source": source, "temperature": t,
                              "target_sensitivity": point.get("target_sensitivity", target_sensitivity), **report}
    return out
