"""Figures of the paper: loss curves (Fig. 5) and the confusion matrix (Fig. 4).

matplotlib runs on the Agg backend (no display on servers and CI) and every
PNG is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dsedge.utils.io import atomic_path  # noqa: E402


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_history(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss per epoch (left) and ACC / mean AUC (right): train, the tuning slice (selects) and val (reports).

    Rows of runs written before tuning slices (`val_*` keys) plot as the reporting split.
    """
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    for role, label, marker, color in (("tuning", "tuning", "^", "tab:orange"),
                                       ("reporting", "val (reporting)", "s", "tab:green")):
        losses = [_get(r, role, "loss") for r in history]
        if any(v is not None and v != "" for v in losses):
            ax1.plot(epochs, _nan(losses), f"{marker}-", color=color, label=f"{label} loss")
            ax2.plot(epochs, _nan([_get(r, role, "accuracy") for r in history]), f"{marker}--", color=color,
                     label=f"{label} ACC")
            ax2.plot(epochs, _nan([_get(r, role, "mean_auc") for r in history]), f"{marker}-", color=color,
                     label=f"{label} mean AUC (MEL, SK)")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("focal loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.legend(fontsize="small")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


def _get(row: dict[str, Any], role: str, key: str) -> Any:
    return row.get(f"{role}_{key}", row.get(f"val_{key}") if role == "reporting" else None)


def _nan(values: Sequence[Any]) -> list[float]:
    return [np.nan if v is None or v == "" else float(v) for v in values]


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path,
                   title: str = "") -> Path:
    """Confusion matrix (rows: true class, columns: predicted) with counts and row-normalised %."""
    cm = np.asarray(matrix, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.4 * len(classes) + 2, 1.4 * len(classes) + 1.5))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(classes)), labels=list(classes))
    ax.set_yticks(range(len(classes)), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.0%}", ha="center", va="center",
                    color="white" if frac[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    return _save(fig, Path(path))
