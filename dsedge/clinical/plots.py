"""Reliability diagram (calibration before/after temperature scaling) and ROC curves with the
operating point marked. matplotlib on Agg; PNGs written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from dsedge.utils.io import atomic_path  # noqa: E402


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_reliability(curves: dict[str, tuple[list[dict[str, Any]], float]], path: str | Path, title: str = "",
                     *, split: str = "") -> Path:
    """`curves`: label -> (reliability bins, ECE). One line per label against the diagonal, each point
    labelled with its bin's image count, and the counts per bin as bars below.

    A point made of 3 images is noise, one made of 80 is evidence: without the counts a reader
    cannot tell them apart. `split` names the data the curves were measured on, in the title.
    """
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    width = 0.8 / max(1, len(curves))
    for i, ((label, (bins, ece)), marker) in enumerate(zip(curves.items(), "os^v", strict=False)):
        x, y = [b["confidence"] for b in bins], [b["accuracy"] for b in bins]
        (line,) = ax.plot(x, y, marker=marker, label=f"{label} (ECE {ece:.3f})")
        for b in bins:
            ax.annotate(f"{b['count']}", (b["confidence"], b["accuracy"]), textcoords="offset points",
                        xytext=(4, -10 if i else 5), fontsize=6, color=line.get_color())
        centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
        step = (bins[0]["upper"] - bins[0]["lower"]) if bins else 0.1
        hist.bar([c + (i - (len(curves) - 1) / 2) * width * step for c in centres], [b["count"] for b in bins],
                 width=width * step, color=line.get_color(), label=label)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    base = title or "reliability diagram"
    ax.set_title(base if not split or split in base else f"{base} ({split} split)")
    hist.set_xlabel("confidence (top-class probability)")
    hist.set_ylabel("images per bin")
    hist.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, path)


def plot_roc(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: str | Path,
             point: tuple[str, float, float] | None = None, title: str = "") -> Path:
    """One-vs-rest ROC per class; `point` = (class, sensitivity, specificity) is marked."""
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for i, c in enumerate(classes):
        positive = labels == i
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, i])
        ax.plot(fpr, tpr, label=f"{c} (AUC {roc_auc_score(positive, probs[:, i]):.3f})")
    if point is not None:
        name, sens, spec = point
        ax.plot([1 - spec], [sens], "r*", ms=14, label=f"{name} operating point (sens {sens:.2f}, spec {spec:.2f})")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "ROC (one vs rest)")
    return _save(fig, path)
