"""The tuning slice: a stratified part of the training split held out at training time. Torch-free.

Training fits weights on the rest; the slice chooses everything else (best epoch, temperature,
operating point, INT8 search) and the val split only reports (DESIGN §3a). The slice is taken
from the *primary* training split only (ISIC 2017 train, never extra data such as HAM10000), so
it has the distribution the model is reported on.

Which images: in each class, the `round(fraction * n)` images whose sha256(seed, file stem) is
smallest. That is deterministic, needs no RNG whose stream could change between NumPy versions,
and does not depend on file order. A class keeps at least one training image; a class with one
image gives none to the slice. The record lists the slice's file stems and fingerprint, so
`tuning_split_from_record` reloads exactly those images and refuses data that differ.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dsedge.data.samples import DatasetSplit, Sample
from dsedge.errors import DataError, DsedgeError

TUNING = "tuning"


def _rank_key(seed: int, sample: Sample) -> str:
    return hashlib.sha256(f"{seed}:{sample.path.stem}".encode()).hexdigest()


def _take(n: int, fraction: float) -> int:
    """How many of a class's `n` images the slice takes: round(fraction * n), leaving >= 1 to train on."""
    return max(0, min(round(fraction * n), n - 1))


def hold_out(split: DatasetSplit, fraction: float, seed: int) -> tuple[DatasetSplit, DatasetSplit, dict[str, Any]]:
    """(training part, tuning part named "tuning", JSON-able record) of `split`.

    `fraction` in (0, 1): the share of each class held out (see the module docstring).
    """
    if not 0.0 < fraction < 1.0:
        raise DsedgeError(f"tuning fraction must be in (0, 1), got {fraction}",
                          hint="e.g. --tuning-fraction 0.2; 0 trains on the whole split (no tuning slice)")
    held: set[int] = set()
    for label in range(len(split.classes)):
        members = [i for i, s in enumerate(split.samples) if s.label == label]
        members.sort(key=lambda i: _rank_key(seed, split.samples[i]))
        held.update(members[:_take(len(members), fraction)])
    if not held:
        raise DataError(f"a {fraction:g} tuning slice of the {len(split)}-image '{split.name}' split is empty",
                        hint="use more data, a larger --tuning-fraction, or --tuning-fraction 0")
    train = [s for i, s in enumerate(split.samples) if i not in held]
    tune = [s for i, s in enumerate(split.samples) if i in held]
    train_part = DatasetSplit(split.name, split.classes, train, split.source, split.root, list(split.warnings))
    tuning = DatasetSplit(TUNING, split.classes, tune, split.source, split.root)
    record = {
        "kind": "holdout", "source_split": split.name, "fraction": fraction, "seed": seed, "n": len(tuning),
        "class_counts": tuning.class_counts(), "ids": sorted(s.path.stem for s in tune),
        "fingerprint": tuning.fingerprint(),
    }
    return train_part, tuning, record


def tuning_split_from_record(data_root: str | Path, record: dict[str, Any]) -> DatasetSplit:
    """The tuning slice a checkpoint recorded, reloaded from `data_root`; `DsedgeError` if it differs.

    Loads `record["source_split"]` of `data_root` in the record's class order and keeps the
    recorded file stems; their fingerprint (names, labels, sizes) must equal the recorded one.
    """
    from dsedge.data.loader import load_split

    if record.get("kind") != "holdout" or not record.get("ids"):
        raise DsedgeError(f"not a tuning-slice record: kind {record.get('kind')!r}, {len(record.get('ids') or [])} ids",
                          hint="pass checkpoint metadata['tuning_split'] written by `dsedge train`")
    source = load_split(data_root, record["source_split"], classes=list(record["class_counts"]))
    wanted = set(record["ids"])
    samples = [s for s in source.samples if s.path.stem in wanted]
    missing = sorted(wanted - {s.path.stem for s in samples})
    if missing:
        raise DataError(f"{len(missing)} tuning image(s) of the checkpoint are not in {data_root}'s "
                        f"'{record['source_split']}' split: {', '.join(missing[:5])}",
                        hint="pass the --data the model was trained on")
    tuning = DatasetSplit(TUNING, source.classes, samples, source.source, source.root)
    if tuning.fingerprint() != record["fingerprint"]:
        raise DataError(f"the tuning images in {data_root} differ from those the checkpoint held out "
                        "(fingerprint mismatch: other labels or files of another size)",
                        hint="pass the --data the model was trained on, unchanged")
    return tuning
