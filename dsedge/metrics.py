"""Classification metrics (torch-free: NumPy + scikit-learn), shared by eval, calibration and bench.

What the paper reports (ACC, per-class P/R/F1, confusion matrix) and what the
ISIC 2017 challenge ranks by (melanoma AUC, SK AUC, their mean), plus balanced
accuracy. How a backend's outputs differ from the FP32 reference's (agreement, flips, metric
deltas) is `dsedge.comparator`'s job.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from dsedge import MELANOMA_CLASS


def _auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC, or None when the split lacks positives or negatives."""
    if y_true.min() == y_true.max():
        return None
    return float(roc_auc_score(y_true, scores))


def classification_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Metrics of predicted class probabilities `probs` (N x C) against integer `labels` (N)."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(axis=1)
    idx = list(range(len(classes)))
    p, r, f1, support = precision_recall_fscore_support(labels, pred, labels=idx, zero_division=0)
    out: dict[str, Any] = {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)) if len(labels) else 0.0,
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": confusion_matrix(labels, pred, labels=idx).tolist(),
        "auc": {c: _auc((labels == i).astype(int), probs[:, i]) for i, c in enumerate(classes)},
    }
    mel = out["auc"].get(MELANOMA_CLASS)
    sk = out["auc"].get("SK")
    out["mel_auc"] = mel
    out["sk_auc"] = sk
    out["mean_auc"] = (mel + sk) / 2 if mel is not None and sk is not None else _mean_auc(out["auc"])
    return out


def _mean_auc(aucs: dict[str, float | None]) -> float | None:
    vals = [v for v in aucs.values() if v is not None]
    return float(np.mean(vals)) if vals else None


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.2f}" if pct else f"{v:.4f}"


def metrics_markdown(metrics: dict[str, Any], title: str = "") -> str:
    """The paper's Table 2 (per-class P / R / F1, in %) plus ACC, balanced ACC and the ISIC 2017 AUCs."""
    lines = [f"## {title}", ""] if title else []
    lines += ["| class | precision % | recall % | F1 % | AUC | support |", "|---|---|---|---|---|---|"]
    for c, m in metrics["per_class"].items():
        lines.append(
            f"| {c} | {_fmt(m['precision'], True)} | {_fmt(m['recall'], True)} | {_fmt(m['f1'], True)} | "
            f"{_fmt(metrics['auc'].get(c))} | {m['support']} |"
        )
    lines += [
        "",
        "| metric | value |",
        "|---|---|",
        f"| images | {metrics['n']} |",
        f"| ACC % | {_fmt(metrics['accuracy'], True)} |",
        f"| balanced ACC % | {_fmt(metrics['balanced_accuracy'], True)} |",
        f"| macro F1 % | {_fmt(metrics['macro_f1'], True)} |",
        f"| melanoma AUC | {_fmt(metrics.get('mel_auc'))} |",
        f"| SK AUC | {_fmt(metrics.get('sk_auc'))} |",
        f"| mean AUC (MEL, SK) | {_fmt(metrics.get('mean_auc'))} |",
        "",
        "Confusion matrix (rows: true, columns: predicted):",
        "",
        "| true \\ pred | " + " | ".join(metrics["per_class"]) + " |",
        "|---" * (len(metrics["per_class"]) + 1) + "|",
    ]
    for c, row in zip(metrics["per_class"], metrics["confusion_matrix"], strict=True):
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    lines += _intervals_markdown(metrics) + _operating_point_markdown(metrics.get("operating_point"))
    return "\n".join(lines) + "\n"


def _ci(v: float | None, ci: list[float] | None, pct: bool = True) -> str:
    if v is None:
        return "n/a"
    if not ci:
        return _fmt(v, pct)
    return f"{_fmt(v, pct)} [{_fmt(ci[0], pct)}, {_fmt(ci[1], pct)}]"


def _intervals_markdown(metrics: dict[str, Any]) -> list[str]:
    """Every metric with its bootstrap 95 % interval (when `dsedge.clinical.evaluation` added them)."""
    intervals = metrics.get("intervals")
    if not intervals:
        return []
    boot = metrics.get("bootstrap", {})
    lines = ["", f"Bootstrap 95 % intervals ({boot.get('resamples')} class-stratified resamples, "
             f"seed {boot.get('seed')}); AUCs as fractions, the rest in %:", "", "| metric | value [95 % CI] |",
             "|---|---|"]
    flat = {"accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
            "macro_f1": metrics["macro_f1"], "mean_auc": metrics.get("mean_auc")}
    for c, m in metrics["per_class"].items():
        flat.update({f"precision_{c}": m["precision"], f"recall_{c}": m["recall"], f"f1_{c}": m["f1"],
                     f"auc_{c}": metrics["auc"].get(c)})
    for key, value in flat.items():
        lines.append(f"| {key} | {_ci(value, intervals.get(key), pct=not key.startswith(('auc', 'mean_auc')))} |")
    if metrics.get("ece") is not None:
        lines.append(f"| expected calibration error (softmax) | {metrics['ece']:.4f} |")
    return lines


def _operating_point_markdown(op: dict[str, Any] | None) -> list[str]:
    if not op:
        return []
    sens, spec = op["sensitivity"], op["specificity"]
    return ["", f"Melanoma operating point ({op['source']}): refer when P(MEL) >= {op['threshold']:.4f} "
            f"(temperature {op['temperature']:.3f}, target sensitivity {op['target_sensitivity']}):", "",
            "| | value [95 % CI] |", "|---|---|",
            f"| sensitivity ({op['positives']} melanomas) | {_ci(sens['value'], sens['ci95'])} |",
            f"| specificity ({op['negatives']} others) | {_ci(spec['value'], spec['ci95'])} |"]
