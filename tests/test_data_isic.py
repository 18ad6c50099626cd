"""ISIC 2017 loader on a synthetic tree, on the real data, and on every kind of bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dsedge.data import available_splits, detect_layout, load_split
from dsedge.data.isic import scan_isic_split
from dsedge.errors import DataError

CSV = "ISIC-2017_Training_Part3_GroundTruth.csv"
IMG = "ISIC-2017_Training_Data"


def _rows(root: Path) -> list[list[str]]:
    with open(root / CSV, newline="") as f:
        return list(csv.reader(f))


def _write(root: Path, rows: list[list[str]]) -> None:
    with open(root / CSV, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_synthetic_tree_counts_and_class_order(tiny_isic: Path) -> None:
    assert detect_layout(tiny_isic) == "isic2017"
    assert available_splits(tiny_isic) == ["train", "val"]
    train = load_split(tiny_isic, "train")
    assert train.classes == ["MEL", "NV", "SK"]
    assert train.class_counts() == {"MEL": 6, "NV": 8, "SK": 5}
    assert load_split(tiny_isic, "val").class_counts() == {"MEL": 3, "NV": 4, "SK": 3}
    assert len(train.fingerprint()) == 64


def test_extra_columns_and_superpixels_are_ignored(tiny_isic: Path) -> None:
    rows = _rows(tiny_isic)
    _write(tiny_isic, [rows[0] + ["extra"]] + [r + ["x"] for r in rows[1:]])
    (tiny_isic / IMG / "ISIC_0000000_superpixels.png").write_bytes(b"\x89PNG")
    split = load_split(tiny_isic, "train")
    assert len(split) == 19 and not split.warnings


def test_missing_csv(tiny_isic: Path) -> None:
    (tiny_isic / CSV).unlink()
    with pytest.raises(DataError, match="ground-truth CSV missing"):
        load_split(tiny_isic, "train")


def test_malformed_csv_header(tiny_isic: Path) -> None:
    (tiny_isic / CSV).write_text("id,mel\nISIC_0000000,1\n")
    with pytest.raises(DataError, match="missing column"):
        load_split(tiny_isic, "train")


def test_bad_values_both_labels_and_missing_images_are_all_reported(tiny_isic: Path) -> None:
    rows = _rows(tiny_isic)
    rows[1][1] = "maybe"  # malformed value
    rows[2][1], rows[2][2] = "1.0", "1.0"  # both labels set
    rows.append(["ISIC_9999999", "0.0", "0.0"])  # listed but missing
    _write(tiny_isic, rows)
    with pytest.raises(DataError) as e:
        load_split(tiny_isic, "train")
    msg = e.value.message
    assert "malformed row" in msg and rows[1][0] in msg
    assert "both melanoma and seborrheic_keratosis" in msg and rows[2][0] in msg
    assert "ISIC_9999999" in msg and "not on disk" in msg


def test_unlisted_image_is_a_warning(tiny_isic: Path) -> None:
    rows = _rows(tiny_isic)
    _write(tiny_isic, rows[:-1])
    split, errors = scan_isic_split(tiny_isic, "train")
    assert not errors
    assert any(rows[-1][0] in w and "not in the CSV" in w for w in split.warnings)


def test_unknown_split_and_missing_split(tiny_isic: Path) -> None:
    with pytest.raises(DataError, match="unknown split"):
        load_split(tiny_isic, "holdout")
    with pytest.raises(DataError, match="missing"):
        load_split(tiny_isic, "test")


@pytest.mark.slow
def test_real_isic2017_official_counts(isic_root: Path) -> None:
    train = load_split(isic_root, "train")
    val = load_split(isic_root, "val")
    assert train.class_counts() == {"MEL": 374, "NV": 1372, "SK": 254}
    assert val.class_counts() == {"MEL": 30, "NV": 78, "SK": 42}
    assert not train.warnings and not val.warnings


def test_a_stray_png_beside_the_jpeg_is_ignored_and_reported(tiny_isic: Path) -> None:
    """Issue 14: ISIC_x.png beside ISIC_x.jpg was used instead of the JPEG, and data check said nothing."""
    from PIL import Image

    from dsedge.data.check import check_data
    from dsedge.data.isic import load_isic_split

    image_dir = tiny_isic / "ISIC-2017_Training_Data"
    jpg = sorted(image_dir.glob("*.jpg"))[0]
    Image.new("RGB", (48, 48), (255, 0, 0)).save(jpg.with_suffix(".png"))
    split = load_isic_split(tiny_isic, "train")
    used = {s.path for s in split.samples}
    assert jpg in used and jpg.with_suffix(".png") not in used
    assert any("share an image id" in w and jpg.with_suffix(".png").name in w for w in split.warnings)
    report = check_data(tiny_isic, verify_images=False)
    assert any("share an image id" in w for w in report.warnings)
