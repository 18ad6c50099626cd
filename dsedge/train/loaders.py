"""The training data: splits (with the tuning slice), image checks, seeded per-epoch loaders, worker errors."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dsedge.config import TrainConfig
from dsedge.data import available_splits, load_split
from dsedge.data.samples import DatasetSplit
from dsedge.errors import DataError, DsedgeError
from dsedge.train import distributed as D
from dsedge.utils.io import atomic_write_json


def seed_epoch(seed: int, epoch: int, rank: int) -> int:
    """Re-seed every RNG from (seed, epoch, rank); returns the seed for the DataLoader generator."""
    s = (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % 2**31
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    return s


def check_splits(data: Path) -> None:
    """Fail before anything is written when the data lacks a train or val split."""
    splits = available_splits(data)
    if "train" not in splits:
        raise DataError(f"{data} has no training split (found: {', '.join(splits) or 'none'})")
    if "val" not in splits:
        raise DataError(
            f"{data} has no validation split (found: {', '.join(splits)})",
            hint="training needs a 'val' split for LR scheduling, early stopping and best-weight "
            "selection: add ISIC-2017_Validation_Data + its ground-truth CSV, ROOT/val/<CLASS>/, or val.csv",
        )


def load_splits(cfg: TrainConfig, data: Path, run_dir: Path,
                ctx: D.DistContext) -> tuple[DatasetSplit, DatasetSplit, DatasetSplit | None, dict[str, Any] | None]:
    """(train, val, tuning slice or None, its record or None); the slice comes from `data`'s train split only."""
    check_splits(data)
    train_split = load_split(data, "train")
    if len(train_split):
        check_images(train_split)  # before the tuning slice comes out of it: its images are checked too
    tuning = record = None
    if cfg.tuning_fraction > 0:
        from dsedge.data.splits import hold_out

        train_split, tuning, record = hold_out(train_split, cfg.tuning_fraction, cfg.seed)
    if cfg.extra_train:
        from dsedge.data.samples import concat_splits

        extras = [load_split(Path(p), "train", classes=train_split.classes) for p in cfg.extra_train]
        for extra in extras:
            check_images(extra)
        train_split = concat_splits(train_split, *extras)
    val_split = load_split(data, "val", classes=train_split.classes)
    if len(train_split) == 0 or len(val_split) == 0:
        raise DataError(f"{data}: empty split (train {len(train_split)}, val {len(val_split)} images)")
    check_images(val_split)
    if cfg.balance == "offline":
        train_split = _offline_balanced(train_split, run_dir / "balanced", cfg.seed, ctx)
    return train_split, val_split, tuning, record


def _offline_balanced(split: DatasetSplit, out: Path, seed: int, ctx: D.DistContext) -> DatasetSplit:
    """The paper's offline balancing, written once into the run folder (rank 0) and reused on resume."""
    from dsedge.data.balance import write_balanced
    from dsedge.data.folders import load_folder_split

    marker = out / "balanced.json"
    fp = split.fingerprint()
    if ctx.is_main:
        done = marker.is_file() and json.loads(marker.read_text()).get("source_fingerprint") == fp
        if not done:
            write_balanced(split, out / "train", seed=seed)
            atomic_write_json(marker, {"source_fingerprint": fp, "seed": seed})
    D.barrier(ctx)
    return load_folder_split(out, "train", split.classes)


def make_loader(split: DatasetSplit, transform: Any, sampler: D.ShardedSampler, cfg: TrainConfig,
                device: torch.device, gen_seed: int, batch_size: int, drop_last: bool = False) -> DataLoader:
    """A fresh loader per epoch: its worker seeds come from `gen_seed`, i.e. from (seed, epoch, rank).

    Training drops the last partial batch (as DDP recipes do): one fixed batch shape
    keeps a compiled model from recompiling, and BatchNorm never sees a batch of 1.
    """
    from dsedge.data.dataset import ImageDataset
    from dsedge.data.transforms import seed_worker

    workers = max(0, cfg.num_workers)
    return DataLoader(
        ImageDataset(split, transform),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(gen_seed),
        prefetch_factor=4 if workers else None,
        drop_last=drop_last and len(sampler) > batch_size,
    )


def check_images(split: DatasetSplit) -> None:
    """Open every image's header before training: a corrupt file fails now, not mid-epoch in a worker."""
    from dsedge.utils.images import image_problem  # header, aspect ratio, truncation (issue 26)

    bad = []
    for sample in split.samples:
        if (problem := image_problem(sample.path)) is not None:
            bad.append(f"{sample.path.name} ({problem})")
    if bad:
        shown = ", ".join(bad[:10]) + (f" ... and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DataError(f"{len(bad)} {split.name} image(s) cannot be read: {shown}",
                        hint=f"run `dsedge data check {split.root}` and remove or replace them")


def read_batches(loader: DataLoader):  # noqa: ANN202 - a generator of (x, y)
    """Iterate `loader`, turning a worker's exception (a 28-line traceback inside the message) into one line."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except DsedgeError as e:
            message, hint = _worker_message(e.message)
            raise type(e)(message, hint=e.hint or hint or "run `dsedge data check` on the data") from None
        except (RuntimeError, OSError, ValueError) as e:
            if "DataLoader worker" not in str(e) and "Caught" not in str(e):
                raise
            message, _ = _worker_message(str(e))
            raise DataError(f"reading a training image failed: {message}",
                            hint="run `dsedge data check` on the data; --workers 0 reads in the main process") from None
        yield batch


def _worker_message(text: str) -> tuple[str, str | None]:
    """(message, hint) from an exception re-raised by a DataLoader worker (its traceback is in the text)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("Caught "):
        return text, None
    hint = None
    for i in range(len(lines) - 1, -1, -1):
        ln = lines[i].strip()
        if ln.startswith("hint:"):
            hint = ln[5:].strip()
            continue
        if not lines[i].startswith(" ") and ":" in ln:
            return ln.split(": ", 1)[1] if ": " in ln else ln, hint
    return lines[-1].strip(), hint


def data_warnings(train_split: DatasetSplit, val_split: DatasetSplit,
                  tuning_split: DatasetSplit | None = None) -> list[str]:
    """What a user should know before hours of training: the loaders' warnings and empty classes."""
    out = list(dict.fromkeys([*train_split.warnings, *val_split.warnings]))
    named = (("training", train_split), ("validation", val_split), ("tuning", tuning_split))
    for what, split in ((w, sp) for w, sp in named if sp is not None):
        empty = [c for c, n in split.class_counts().items() if n == 0]
        if empty:
            effect = ("the model can never learn to predict it" if what == "training"
                      else "its AUC and recall cannot be measured")
            out.append(f"class(es) {', '.join(empty)} have no {what} images: {effect}")
    return out
