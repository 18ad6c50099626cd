"""Folder-per-class and path,label CSV datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from dsedge.data import available_splits, detect_layout, load_split
from dsedge.errors import DataError


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 16), (120, 80, 60)).save(path)
    return path


def test_folder_tree_with_splits_and_aliases(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _img(tmp_path / split / "melanoma" / "a.jpg")
        _img(tmp_path / split / "NV" / "b.png")
        _img(tmp_path / split / "seborrheic_keratosis" / "c.jpg")
    assert detect_layout(tmp_path) == "folders"
    assert available_splits(tmp_path) == ["train", "val"]
    split = load_split(tmp_path, "val")
    assert split.classes == ["MEL", "NV", "SK"]
    assert split.class_counts() == {"MEL": 1, "NV": 1, "SK": 1}


def test_flat_folder_tree_is_split_all_and_other_labels_sorted(tmp_path: Path) -> None:
    _img(tmp_path / "bcc" / "1.jpg")
    _img(tmp_path / "akiec" / "2.jpg")
    assert available_splits(tmp_path) == ["all"]
    split = load_split(tmp_path, "all")
    assert split.classes == ["akiec", "bcc"]
    with pytest.raises(DataError, match="no 'train' split"):
        load_split(tmp_path, "train")


def test_path_label_csv_with_split_column(tmp_path: Path) -> None:
    _img(tmp_path / "img" / "x.jpg")
    _img(tmp_path / "img" / "y.jpg")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label,split\nimg/x.jpg,MEL,train\nimg/y.jpg,nevus,val\n")
    assert detect_layout(csv_path) == "csv"
    assert available_splits(csv_path) == ["train", "val"]
    val = load_split(csv_path, "val")
    assert val.samples[0].path.name == "y.jpg" and val.classes[val.samples[0].label] == "NV"


def test_csv_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.jpg,MEL\n")
    with pytest.raises(DataError, match="expected columns path,label"):
        load_split(bad, "all")
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\nnope.jpg,MEL\n")
    with pytest.raises(DataError, match="image not found"):
        load_split(missing, "all")
    with pytest.raises(DataError, match="no split column"):
        load_split(missing, "train")


def test_no_dataset_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no dataset found"):
        detect_layout(tmp_path)
    with pytest.raises(DataError, match="not found"):
        detect_layout(tmp_path / "nope")
