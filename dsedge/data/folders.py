"""User datasets beyond ISIC 2017: a folder per class, or a `path,label` CSV.

Folder tree:   ROOT/<split>/<CLASS>/*.jpg    (split = train | val | test)
               ROOT/<CLASS>/*.jpg            (one split, called "all")
CSV:           FILE.csv with columns path,label[,split] (paths relative to the CSV),
               or ROOT/<split>.csv.
Labels may be ISIC codes or names (melanoma, nevus, seborrheic_keratosis, ...);
they are normalised with `LABEL_ALIASES` so ISIC 2018/2019 and HAM10000 exports work.

A label no known spelling matches is an error naming the closest known one
('melanomaa' -> did you mean 'melanoma (MEL)'?) instead of a silent extra class;
a CSV row listing an image already listed is counted once (a warning), or is an
error when the labels disagree. Every problem of a CSV is collected and reported
together (`scan_csv_split`), so `dsedge data check` shows them all and still
counts the usable rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dsedge.data.samples import (
    SPLITS,
    DatasetSplit,
    Sample,
    class_order,
    closest_label,
    normalise_label,
    unknown_label_problems,
)
from dsedge.errors import DataError
from dsedge.utils.images import is_image_file


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_splits(root: Path) -> list[str]:
    """Splits a folder tree offers: its split sub-folders, or "all" for a flat class tree."""
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present:
        return present
    if any(any(is_image_file(f) for f in d.iterdir()) for d in _class_dirs(root)):
        return ["all"]
    return []


def load_folder_split(root: Path, split: str, classes: list[str] | None = None) -> DatasetSplit:
    base = root if split == "all" else root / split
    if not base.is_dir():
        have = folder_splits(root)
        raise DataError(
            f"{root} has no '{split}' split (found: {', '.join(have) or 'none'})",
            hint="lay the data out as ROOT/train/<CLASS>/*.jpg and ROOT/val/<CLASS>/*.jpg",
        )
    per_class: dict[str, list[Path]] = {}
    folders: dict[str, str] = {}
    for d in _class_dirs(base):
        files = sorted(f for f in d.iterdir() if is_image_file(f))
        if files:
            per_class.setdefault(normalise_label(d.name), []).extend(files)
            folders[d.name] = f"folder {d}"
    if not per_class:
        raise DataError(f"{base}: no class folders with images")
    if problems := unknown_label_problems(folders):
        raise DataError(f"{base}: " + "; ".join(problems.values()), hint="rename the class folder to a known label")
    names = classes or class_order(set(per_class))
    unknown = sorted(set(per_class) - set(names))
    if unknown:
        raise DataError(f"{base}: class folder(s) {', '.join(unknown)} not in the class list {names}"
                        + _did_you_mean(unknown, names))
    samples = [Sample(p, names.index(c)) for c in names for p in per_class.get(c, [])]
    return DatasetSplit(split, names, samples, "folders", root)


def read_label_csv(csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise DataError(f"CSV not found: {csv_path}")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            if "path" not in header or "label" not in header:
                raise DataError(
                    f"{csv_path}: expected columns path,label[,split]; found {','.join(header) or 'nothing'}"
                )
            return [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{csv_path}: not a readable CSV ({e})") from e


def csv_splits(source: Path) -> list[str]:
    if source.is_dir():
        return [s for s in SPLITS if (source / f"{s}.csv").is_file()]
    rows = read_label_csv(source)
    splits = sorted({r.get("split", "") for r in rows} - {""})
    return splits or ["all"]


def _did_you_mean(unknown: list[str], names: list[str]) -> str:
    near = [n for n in (closest_label(u) for u in unknown) if n]
    return f" (closest known: {', '.join(near)})" if near else ""


def _listing(problems: list[str]) -> str:
    return "; ".join(problems[:10]) + (f" ... and {len(problems) - 10} more" if len(problems) > 10 else "")


def load_csv_split(source: Path, split: str, classes: list[str] | None = None) -> DatasetSplit:
    """`source` is a CSV file (optional split column) or a folder holding <split>.csv files.

    Raises one `DataError` listing every problem of the CSV (see `scan_csv_split`).
    """
    ds, errors = scan_csv_split(source, split, classes)
    if errors:
        raise DataError("; ".join(errors), hint=f"check the data with `dsedge data check {source}`")
    return ds


def scan_csv_split(source: Path, split: str, classes: list[str] | None = None) -> tuple[DatasetSplit, list[str]]:
    """The usable rows of one split and every problem found (never raises for a problem in the rows)."""
    csv_path = source / f"{split}.csv" if source.is_dir() else source
    rows = read_label_csv(csv_path)
    if not source.is_dir() and split != "all":
        if not any("split" in r for r in rows):
            raise DataError(f"{csv_path} has no split column, so it has no '{split}' split", hint="use --split all")
        rows = [r for r in rows if r.get("split") == split]
        if not rows:
            raise DataError(f"{csv_path}: no rows with split={split}")
    problems, entries, first_seen, by_path, duplicates = [], [], {}, {}, []
    for lineno, r in enumerate(rows, start=2):
        if not r.get("path") or not r.get("label"):
            problems.append(f"line {lineno}: empty path or label")
            continue
        p = Path(r["path"])
        p = p if p.is_absolute() else csv_path.parent / p
        if not p.is_file():
            problems.append(f"line {lineno}: image not found: {p}")
            continue
        label = normalise_label(r["label"])
        first_seen.setdefault(r["label"], f"line {lineno}")
        key = p.resolve()
        if key in by_path:
            seen_line, seen_label = by_path[key]
            if seen_label != label:
                problems.append(f"line {lineno}: {r['path']} is labelled {label} here and {seen_label} on line "
                                f"{seen_line}")
            else:
                duplicates.append(f"line {lineno} ({r['path']}, first on line {seen_line})")
            continue
        by_path[key] = (lineno, label)
        entries.append((p, label))
    bad_labels = unknown_label_problems(first_seen)
    problems += bad_labels.values()
    errors = [f"{csv_path}: {len(problems)} problem(s): {_listing(problems)}"] if problems else []
    unknown_names = {normalise_label(raw) for raw in bad_labels}  # kept out of the class list and counts
    names = classes or class_order({label for _, label in entries} - unknown_names)
    if not entries and not problems:
        errors.append(f"{csv_path}: no samples")
    outside = sorted({label for _, label in entries} - set(names) - unknown_names)
    if outside:
        errors.append(f"{csv_path}: label(s) {', '.join(outside)} not in the class list {names}"
                      + _did_you_mean(outside, names))
    samples = [Sample(p, names.index(label)) for p, label in entries if label in names]
    ds = DatasetSplit(split, names, samples, "csv", csv_path.parent)
    if duplicates:
        ds.warnings.append(f"{csv_path}: {len(duplicates)} row(s) list an image already listed and are counted "
                           f"once: {_listing(duplicates)}")
    return ds, errors
