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


# ----------------------------------------------------------------------------- issue 26: silent label results


def _csv(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    for path, _, _ in rows:
        if not path.startswith("missing"):
            _img(tmp_path / path)
    text = "path,label,split\n" + "".join(f"{p},{lab},{s}\n" for p, lab, s in rows)
    (tmp_path / "data.csv").write_text(text)
    return tmp_path / "data.csv"


def test_a_label_typo_is_an_error_naming_the_closest_label(tmp_path: Path) -> None:
    """'melanomaa' used to become a fourth class and train a 4-class model with 'no problems found'."""
    csv = _csv(tmp_path, [("a.jpg", "melanoma", "train"), ("b.jpg", "nevus", "train"),
                          ("c.jpg", "melanomaa", "train"), ("d.jpg", "SK", "train")])
    with pytest.raises(DataError, match=r"unknown label 'melanomaa' \(line 4\); did you mean 'melanoma \(MEL\)'\?"):
        load_split(csv, "train")


def test_a_typo_in_a_class_folder_name_is_an_error(tmp_path: Path) -> None:
    _img(tmp_path / "train" / "MEL" / "a.jpg")
    _img(tmp_path / "train" / "nevsu" / "b.jpg")
    with pytest.raises(DataError, match="unknown label 'nevsu'.*did you mean 'nevus"):
        load_split(tmp_path, "train")


def test_own_class_names_are_still_accepted(tmp_path: Path) -> None:
    csv = _csv(tmp_path, [("a.jpg", "benign", "all"), ("b.jpg", "malignant", "all")])
    assert load_split(csv, "all").classes == ["benign", "malignant"]


def test_duplicate_rows_are_counted_once_and_conflicts_refused(tmp_path: Path) -> None:
    csv = _csv(tmp_path, [("a.jpg", "MEL", "train"), ("b.jpg", "NV", "train"), ("a.jpg", "melanoma", "train")])
    split = load_split(csv, "train")
    assert split.class_counts() == {"MEL": 1, "NV": 1, "SK": 0}
    assert any("1 row(s) list an image already listed and are counted once" in w for w in split.warnings)
    csv = _csv(tmp_path, [("a.jpg", "MEL", "train"), ("./a.jpg", "NV", "train")])
    with pytest.raises(DataError, match=r"line 3: ./a.jpg is labelled NV here and MEL on line 2"):
        load_split(csv, "train")


def test_every_problem_of_a_csv_is_reported_together(tmp_path: Path) -> None:
    csv = _csv(tmp_path, [("a.jpg", "MEL", "train"), ("missing.jpg", "NV", "train"), ("c.jpg", "", "train"),
                          ("d.jpg", "melanomaa", "train"), ("e.jpg", "NV", "train")])
    with pytest.raises(DataError) as e:
        load_split(csv, "train")
    assert "3 problem(s)" in e.value.message
    for part in ("image not found", "empty path or label", "unknown label 'melanomaa'"):
        assert part in e.value.message
