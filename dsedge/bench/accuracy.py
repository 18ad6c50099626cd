"""Task accuracy of every bench row on a data split, and agreement with the FP32 reference.

Images are decoded and preprocessed once with the torch-free runtime's
preprocessing (the bundle's definition), then every runner sees the very same
float32 tensors, so differences between rows are the backends' and precisions'
own. Metrics come from `dsedge.metrics` (ACC, balanced ACC, per-class
F1, MEL/SK AUC), agreement with the reference (top-1 agreement, |prob diff|)
from `dsedge.comparator`.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.comparator import agreement
from dsedge.engines.base import predict_probs
from dsedge.errors import DataError
from dsedge.metrics import classification_metrics

#: `predict_probs` lives in `dsedge.engines.base` (calibration uses it too); re-exported for the bench.
__all__ = ["EvalSet", "accuracy_block", "load_eval_set", "predict_probs"]


@dataclass
class EvalSet:
    """Preprocessed images of one split with their labels, shared by all rows."""

    name: str
    root: str
    images: np.ndarray  # N x 3 x H x W float32
    labels: np.ndarray  # N int64
    classes: list[str]
    fingerprint: str

    def describe(self) -> dict[str, Any]:
        counts = {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}
        return {"root": self.root, "split": self.name, "n": int(len(self.labels)), "class_counts": counts,
                "fingerprint": self.fingerprint}


def load_eval_set(
    root: str | Path,
    split: str,
    preprocessing: dict[str, Any],
    classes: list[str],
    progress: Callable[[int], None] | None = None,
) -> EvalSet:
    """Load `split` of the dataset at `root` and preprocess it into one array.

    The dataset's class names must be the bundle's (same names; order is mapped
    to the bundle's order), otherwise every metric would be silently wrong.
    """
    from dsedge.data import load_split
    from dsedge.runtime.preprocess import preprocess_image
    from dsedge.utils.images import load_rgb

    ds = load_split(Path(root), split)
    if not ds.samples:
        raise DataError(f"split '{split}' of {root} has no images")
    unknown = sorted(set(ds.classes) - set(classes))
    if unknown:
        raise DataError(
            f"{root} ({split}) has classes {', '.join(ds.classes)}, the model predicts {', '.join(classes)}",
            "bench a bundle trained on these classes",
        )
    remap = np.asarray([classes.index(c) for c in ds.classes], dtype=np.int64)
    images = np.empty((len(ds.samples), 3, int(preprocessing["crop"]), int(preprocessing["crop"])), np.float32)
    labels = np.empty(len(ds.samples), dtype=np.int64)
    for i, sample in enumerate(ds.samples):
        images[i] = preprocess_image(load_rgb(sample.path), preprocessing)
        labels[i] = remap[sample.label]
        if progress is not None:
            progress(1)
    return EvalSet(split, str(root), images, labels, list(classes), ds.fingerprint())


def accuracy_block(
    probs: np.ndarray, eval_set: EvalSet, reference_probs: np.ndarray | None
) -> dict[str, Any]:
    """Metrics of one row; with `reference_probs`, its agreement with the FP32 reference too."""
    metrics = classification_metrics(eval_set.labels, probs, eval_set.classes)
    block: dict[str, Any] = {
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "f1": {c: v["f1"] for c, v in metrics["per_class"].items()},
        "macro_f1": metrics["macro_f1"],
        "mel_auc": metrics["mel_auc"],
        "sk_auc": metrics["sk_auc"],
        "mean_auc": metrics["mean_auc"],
        "confusion_matrix": metrics["confusion_matrix"],
        "n": metrics["n"],
    }
    if reference_probs is not None:
        block["agreement"] = agreement(reference_probs, probs)
    return block
