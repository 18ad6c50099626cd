"""ISIC 2017 Part 3 in its official layout.

    ISIC-2017_Training_Data/ISIC_0000000.jpg          (+ *_superpixels.png, ignored)
    ISIC-2017_Training_Part3_GroundTruth.csv           image_id,melanoma,seborrheic_keratosis[,...]
    ISIC-2017_Validation_Data/ ...  ISIC-2017_Validation_Part3_GroundTruth.csv
    ISIC-2017_Test_v2_Data/ ...     ISIC-2017_Test_v2_Part3_GroundTruth.csv

Nevus is "both labels 0". A row with both labels set, a listed image that is
missing, or a malformed CSV is an error (all are collected, then reported
together); an image on disk that the CSV does not list is a warning.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dsedge import ISIC2017_CLASSES, MELANOMA_CLASS
from dsedge.data.samples import DatasetSplit, Sample
from dsedge.errors import DataError
from dsedge.utils.images import is_image_file

SPLIT_NAMES = {"train": "Training", "val": "Validation", "test": "Test_v2"}
REQUIRED_COLUMNS = ("image_id", "melanoma", "seborrheic_keratosis")
MAX_LISTED = 10  # file names shown per problem before "... and N more"


def is_isic2017(root: Path) -> bool:
    return any(root.glob("ISIC-2017_*_Part3_GroundTruth.csv")) or any(root.glob("ISIC-2017_*_Data"))


def split_paths(root: Path, split: str) -> tuple[Path, Path]:
    if split not in SPLIT_NAMES:
        raise DataError(f"unknown split '{split}'", hint=f"use one of: {', '.join(SPLIT_NAMES)}")
    name = SPLIT_NAMES[split]
    return root / f"ISIC-2017_{name}_Data", root / f"ISIC-2017_{name}_Part3_GroundTruth.csv"


def available_splits(root: Path) -> list[str]:
    return [s for s in SPLIT_NAMES if split_paths(root, s)[1].exists() or split_paths(root, s)[0].exists()]


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


def _parse_flag(value: str) -> float:
    v = float(value)
    if v not in (0.0, 1.0):
        raise ValueError(f"expected 0 or 1, got {value!r}")
    return v


#: When several files share an image id, the official ISIC format wins (then the order below).
_EXTENSION_PRIORITY = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def _images_by_id(image_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """image id -> file, preferring JPEG when `ISIC_x.png` sits beside `ISIC_x.jpg`; plus the ignored names.

    Directory order is arbitrary, so without a rule a stray PNG could silently replace the JPEG.
    """
    by_id: dict[str, list[Path]] = {}
    for p in image_dir.iterdir():
        if is_image_file(p) and not p.stem.endswith("_superpixels"):
            by_id.setdefault(p.stem, []).append(p)

    def rank(p: Path) -> tuple[int, str]:
        ext = p.suffix.lower()
        return (_EXTENSION_PRIORITY.index(ext) if ext in _EXTENSION_PRIORITY else len(_EXTENSION_PRIORITY), p.name)

    chosen, shadowed = {}, []
    for image_id, files in by_id.items():
        files.sort(key=rank)
        chosen[image_id] = files[0]
        shadowed.extend(f.name for f in files[1:])
    return chosen, sorted(shadowed)


def scan_isic_split(root: Path, split: str) -> tuple[DatasetSplit, list[str]]:
    """Read one split; return it together with the list of *errors* (warnings live on the split)."""
    image_dir, csv_path = split_paths(root, split)
    errors: list[str] = []
    split_obj = DatasetSplit(split, list(ISIC2017_CLASSES), [], "isic2017", root)
    if not csv_path.is_file():
        errors.append(f"ground-truth CSV missing: {csv_path}")
        return split_obj, errors
    if not image_dir.is_dir():
        errors.append(f"image folder missing: {image_dir}")
        return split_obj, errors
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing_cols = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing_cols:
                errors.append(
                    f"{csv_path}: missing column(s) {', '.join(missing_cols)} "
                    f"(expected header {','.join(REQUIRED_COLUMNS)}; found {','.join(header) or 'nothing'})"
                )
                return split_obj, errors
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        errors.append(f"{csv_path}: not a readable CSV ({e})")
        return split_obj, errors

    on_disk, shadowed = _images_by_id(image_dir)
    if shadowed:
        split_obj.warnings.append(
            f"{image_dir}: {len(shadowed)} file(s) share an image id with a JPEG and are ignored "
            f"(the JPEG is used): {_listing(shadowed)}")
    bad_rows, both, missing, seen = [], [], [], set()
    for lineno, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        image_id = row.get("image_id", "")
        try:
            mel = _parse_flag(row["melanoma"])
            sk = _parse_flag(row["seborrheic_keratosis"])
        except (ValueError, KeyError, TypeError) as e:
            bad_rows.append(f"line {lineno} ({image_id or '?'}): {e}")
            continue
        if not image_id:
            bad_rows.append(f"line {lineno}: empty image_id")
            continue
        if mel and sk:
            both.append(image_id)
            continue
        if image_id in seen:
            bad_rows.append(f"line {lineno}: duplicate image_id {image_id}")
            continue
        seen.add(image_id)
        path = on_disk.get(image_id)
        if path is None:
            missing.append(image_id)
            continue
        label = ISIC2017_CLASSES.index(MELANOMA_CLASS if mel else "SK" if sk else "NV")
        split_obj.samples.append(Sample(path, label))
    if bad_rows:
        errors.append(f"{csv_path}: {len(bad_rows)} malformed row(s): {_listing(bad_rows)}")
    if both:
        errors.append(
            f"{csv_path}: {len(both)} row(s) with both melanoma and seborrheic_keratosis set: {_listing(both)}"
        )
    if missing:
        errors.append(f"{image_dir}: {len(missing)} image(s) listed in the CSV but not on disk: {_listing(missing)}")
    unlisted = sorted(set(on_disk) - seen - set(both))
    if unlisted:
        split_obj.warnings.append(
            f"{image_dir}: {len(unlisted)} image(s) on disk but not in the CSV (ignored): {_listing(unlisted)}"
        )
    if not rows:
        errors.append(f"{csv_path}: no rows")
    return split_obj, errors


def load_isic_split(root: Path, split: str) -> DatasetSplit:
    """Load a split or raise one `DataError` that lists every problem found."""
    split_obj, errors = scan_isic_split(root, split)
    if errors:
        raise DataError("; ".join(errors), hint=f"check the data with `dsedge data check {root}`")
    return split_obj
