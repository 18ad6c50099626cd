"""`load_split(root, split)`: one entry point for every dataset layout, auto-detected."""

from __future__ import annotations

import os
from pathlib import Path

from dsedge.data import folders, isic
from dsedge.data.samples import DatasetSplit
from dsedge.errors import DataError


def detect_layout(root: str | os.PathLike) -> str:
    """'isic2017', 'csv' or 'folders' for a data path, or a `DataError` saying what was expected."""
    p = Path(root)
    if not p.exists():
        raise DataError(f"data path not found: {p}", hint="pass an ISIC 2017 folder, a ROOT/<split>/<CLASS>/ tree or a path,label CSV")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"{p} is a file but not a .csv", hint="pass a dataset folder or a path,label CSV")
    if isic.is_isic2017(p):
        return "isic2017"
    if any((p / f"{s}.csv").is_file() for s in ("train", "val", "test")):
        return "csv"
    if folders.folder_splits(p):
        return "folders"
    raise DataError(
        f"{p}: no dataset found",
        hint="expected the ISIC 2017 layout (ISIC-2017_*_Data + *_Part3_GroundTruth.csv), "
        "ROOT/<split>/<CLASS>/*.jpg folders, or a path,label CSV",
    )


def available_splits(root: str | os.PathLike) -> list[str]:
    p = Path(root)
    layout = detect_layout(p)
    if layout == "isic2017":
        return isic.available_splits(p)
    if layout == "csv":
        return folders.csv_splits(p)
    return folders.folder_splits(p)


def load_split(root: str | os.PathLike, split: str, classes: list[str] | None = None) -> DatasetSplit:
    """Load one split of any supported layout; `classes` pins the class order (e.g. from a checkpoint)."""
    p = Path(root)
    layout = detect_layout(p)
    if layout == "isic2017":
        ds = isic.load_isic_split(p, split)
        if classes and classes != ds.classes:
            raise DataError(f"ISIC 2017 classes are {ds.classes}, the model expects {classes}")
        return ds
    if layout == "csv":
        return folders.load_csv_split(p, split, classes)
    return folders.load_folder_split(p, split, classes)
