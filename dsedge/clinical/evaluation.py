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

from dsedge.clinical.calibration import expected_calibration_error, softmax
from dsedge.clinical.operating_point import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    DEFAULT_TARGET_SENSITIVITY,
    choose_threshold,
    operating_point_report,
)
from dsedge.metrics import classification_metrics
from dsedge.runtime.decision import MELANOMA
from dsedge.stats import percentile_interval, resample_indices


def metric_values(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float | None]:
    """Flat metrics of one (re)sample: accuracy, balanced accuracy, macro F1, per-class P/R/F1/AUC, mean AUC.

    A flat view of `dsedge.metrics.classification_metrics` (the one definition of every metric);
    a class without images in the sample has an undefined recall (None), not sklearn's 0.
    """
    m = classification_metrics(labels, probs, classes)
    out: dict[str, float | None] = {"accuracy": m["accuracy"]}
    for c, pc in m["per_class"].items():
        out.update({f"precision_{c}": pc["precision"], f"recall_{c}": pc["recall"] if pc["support"] else None,
                    f"f1_{c}": pc["f1"], f"auc_{c}": m["auc"][c]})
    out["balanced_accuracy"] = m["balanced_accuracy"] if m["n"] else None
    out["macro_f1"] = m["macro_f1"]
    out["mean_auc"] = m["mean_auc"]
    return out


def bootstrap_intervals(labels: np.ndarray, probs: np.ndarray, classes: list[str],
                        resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, list[float] | None]:
    """Percentile 95 % interval of every `metric_values` key over class-stratified resamples."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    samples: dict[str, list[float | None]] = {}
    for idx in resample_indices(len(labels), resamples, seed, stratify=labels):  # dsedge's one bootstrap
        for k, v in metric_values(labels[idx], probs[idx], classes).items():
            samples.setdefault(k, []).append(v)
    keys = metric_values(labels, probs, classes).keys()
    return {k: percentile_interval(samples.get(k, [])) for k in keys}


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
