"""`evaluate_checkpoint()`: the paper's Table 2 and Fig. 4 for a trained checkpoint on one split.

The checkpoint's metadata supplies the model, class order and preprocessing, so
evaluation sees exactly the tensors training's validation saw. Inference runs in
FP32 (this is the reference the exported backends are compared against).
Outputs (in `out_dir`): metrics.json, metrics.md (Table 2), confusion_matrix.png
(Fig. 4), predictions.csv (per-image probabilities), and for clinicians
(`dsedge.clinical.evaluation`): bootstrap 95 % intervals of every metric, sensitivity and
specificity at the melanoma operating point (a bundle's, or chosen on this split for the target
sensitivity) and roc.png with that point marked.

`tta=True` averages each image's probabilities over its 8 dihedral views
(`dsedge.runtime.tta.dihedral_average`, the runtime's own function, one forward of 8x the batch).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dsedge.config import PreprocessConfig
from dsedge.data import DatasetSplit, Sample, available_splits, load_split
from dsedge.errors import DataError
from dsedge.metrics import classification_metrics, metrics_markdown
from dsedge.models.checkpoint import checkpoint_paths, load_checkpoint
from dsedge.train.distributed import resolve_device
from dsedge.utils.io import atomic_write_json, atomic_write_text, sha256_file


@torch.no_grad()
def predict_split(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                  progress: Callable[[int], None] | None = None, tta: bool = False) -> np.ndarray:
    """Softmax probabilities (N x C, float64) of `model` over `loader`, in loader order (`tta`: 8-view mean)."""
    from dsedge.runtime.tta import dihedral_average

    model.eval().to(device)

    def logits_of(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x).to(device)).float().cpu().numpy()

    out = []
    for x, _ in loader:
        logits = torch.from_numpy(dihedral_average(logits_of, x.numpy())) if tta else model(x.to(device))
        out.append(torch.softmax(logits.float(), dim=1).double().cpu())
        if progress:
            progress(len(x))
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "val",
    out_dir: str | Path | None = None,
    batch_size: int = 32,
    device: str = "auto",
    num_workers: int = 2,
    expect_model: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    bundle: str | Path | None = None,
    target_sensitivity: float = 0.90,
    resamples: int = 1000,
    tta: bool = False,
) -> dict[str, Any]:
    """Evaluate `checkpoint` on `split` of `data`; write the outputs; return the metrics dict.

    `out_dir` defaults to `<checkpoint folder>/eval-<split>` (`eval-<split>-tta` with `tta`). The returned dict is
    `classification_metrics(...)` plus `intervals`, `operating_point`, `ece`, `checkpoint`,
    `split`, `data`, `tta` and `outputs`. `bundle` supplies the stored temperature and melanoma threshold
    (else the threshold is chosen on this split for `target_sensitivity`).
    """
    model, meta = load_checkpoint(checkpoint, expect_model=expect_model)
    classes = list(meta["classes"])
    ds = _eval_split(data, split, classes, meta.get("tuning_split"))
    pre = PreprocessConfig.from_dict(meta["preprocessing"]) if meta.get("preprocessing") else PreprocessConfig()
    if on_total:
        on_total(len(ds))
    probs = _predict(model, ds, pre, batch_size, num_workers, resolve_device(device), progress, tta)
    labels = np.asarray(ds.labels, dtype=np.int64)
    metrics = _metrics(labels, probs, classes, _bundle_clinical(bundle, classes), target_sensitivity, resamples)

    weights, _ = checkpoint_paths(checkpoint)
    out = Path(out_dir) if out_dir else weights.parent / f"eval-{split}{'-tta' if tta else ''}"
    out.mkdir(parents=True, exist_ok=True)
    outputs = {
        "json": out / "metrics.json",
        "markdown": out / "metrics.md",
        "confusion_png": out / "confusion_matrix.png",
        "predictions": out / "predictions.csv",
        "roc_png": out / "roc.png",
    }
    result = {
        **metrics,
        "checkpoint": str(weights),
        "checkpoint_sha256": sha256_file(weights),
        "model": meta["model"],
        "epoch": meta.get("epoch"),
        "split": split,
        "tta": tta,
        "data": str(data),
        "data_fingerprint": ds.fingerprint(),
        "preprocessing": pre.to_dict(),
        "outputs": {k: str(v) for k, v in outputs.items()},
    }
    title = f"{meta['model']} ({weights.name}) on {split}, {len(ds)} images{', 8-view TTA' if tta else ''}"
    _write_outputs(outputs, result, metrics, title, ds.samples, labels, probs, classes)
    return result


def _eval_split(data: str | Path, split: str, classes: list[str],
                tuning_record: dict[str, Any] | None = None) -> DatasetSplit:
    """The non-empty `split` of `data`, labelled in the checkpoint's class order.

    `tuning` is the slice of training data the checkpoint held out (`dsedge train --tuning-fraction`):
    choices such as TTA on / off are made there, the reporting split is looked at once.
    """
    if split == "tuning":
        if not tuning_record:
            raise DataError("this checkpoint held no tuning slice out of its training data",
                            "train with --tuning-fraction, or evaluate --split val")
        from dsedge.data.splits import tuning_split_from_record

        return tuning_split_from_record(data, tuning_record)
    splits = available_splits(data)
    if split not in splits:
        raise DataError(f"{data} has no '{split}' split (found: {', '.join(splits) or 'none'})")
    ds = load_split(data, split, classes=classes)
    if len(ds) == 0:
        raise DataError(f"{data}: the '{split}' split is empty")
    return ds


def _predict(model: torch.nn.Module, ds: DatasetSplit, pre: PreprocessConfig, batch_size: int, num_workers: int,
             device: torch.device, progress: Callable[[int], None] | None, tta: bool = False) -> np.ndarray:
    """FP32 probabilities over `ds` with training's own eval transform (what validation saw)."""
    from dsedge.data.dataset import ImageDataset
    from dsedge.data.transforms import eval_transform

    loader = DataLoader(ImageDataset(ds, eval_transform(pre)), batch_size=batch_size, shuffle=False,
                        num_workers=max(0, num_workers))
    return predict_split(model, loader, device, progress, tta)


def _metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str], clinical: dict[str, Any] | None,
             target_sensitivity: float, resamples: int) -> dict[str, Any]:
    """Table 2's metrics plus the clinical block (intervals, operating point, ECE)."""
    from dsedge.clinical.evaluation import clinical_evaluation

    metrics = classification_metrics(labels, probs, classes)
    metrics.update(clinical_evaluation(labels, probs, classes, clinical=clinical,
                                       target_sensitivity=target_sensitivity, resamples=resamples))
    return metrics


def _write_outputs(outputs: dict[str, Path], result: dict[str, Any], metrics: dict[str, Any], title: str,
                   samples: list[Sample], labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> None:
    """metrics.json, metrics.md, predictions.csv, the confusion matrix and the ROC with the operating point."""
    from dsedge.clinical.plots import plot_roc
    from dsedge.train.plots import plot_confusion

    atomic_write_json(outputs["json"], result)
    atomic_write_text(outputs["markdown"], metrics_markdown(metrics, title))
    _write_predictions(outputs["predictions"], samples, probs, classes)
    plot_confusion(metrics["confusion_matrix"], classes, outputs["confusion_png"], title=title)
    op = metrics.get("operating_point")
    point = (op["class"], op["sensitivity"]["value"], op["specificity"]["value"]) if op else None
    plot_roc(labels, probs, classes, outputs["roc_png"], point=point, title=title)


def _bundle_clinical(bundle: str | Path | None, classes: list[str]) -> dict[str, Any] | None:
    """The `clinical` block of a bundle whose classes match the checkpoint's (None without a bundle)."""
    if bundle is None:
        return None
    from dsedge.runtime.bundle import load_bundle

    b = load_bundle(bundle, verify=False)
    if b.classes != classes:
        raise DataError(f"bundle {bundle} has classes {b.classes}, the checkpoint {classes}")
    if not (b.manifest.get("clinical") or {}).get("operating_point"):
        raise DataError(f"bundle {bundle} has no fitted operating point", "run `dsedge risk BUNDLE --data DIR` first")
    return b.clinical


def _write_predictions(path: Path, samples: list, probs: np.ndarray, classes: list[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "label", "prediction", *[f"p_{c}" for c in classes]])
    for s, p in zip(samples, probs, strict=True):
        w.writerow([s.path.name, classes[s.label], classes[int(p.argmax())], *[f"{v:.6f}" for v in p]])
    atomic_write_text(path, buf.getvalue())
