"""Which labelled images tune a bundle and which report on it (DESIGN §3a). Torch-free.

Three roles: training data fits the weights; the *tuning* split chooses everything else
(temperature, operating point, INT8 ranges' keep-float search, the budget); the *reporting*
split only reports. `resolve_roles` is the one place that decides them for `dsedge risk`,
`dsedge calibrate` and `dsedge eval`:

* the checkpoint held a slice of its training data out (the manifest's `training.tuning_split`,
  written by `dsedge train --tuning-fraction`): that slice tunes, the named split (default
  `val`) reports;
* the slice was held out of this run but seen by the weights it started from (`--init-from` a
  model trained on it: the manifest's `training.init_excludes_tuning` is false): the slice's
  numbers are in-sample, so it is treated as absent (below) and `Roles.note` says why;
* otherwise the named split is the only labelled data the weights never saw: it tunes, and
  claims about it are cross-fitted (operating point) or measured on a disjoint, seeded,
  stratified half (INT8) — never measured on the images that fitted them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.bundle import ManifestReader, read_manifest
from dsedge.data.samples import DatasetSplit
from dsedge.errors import DataError

HALF_SEED = 0


@dataclass
class Roles:
    """The tuning split, the reporting split (None: claims are cross-fitted on tuning) and why."""

    tuning: DatasetSplit
    reporting: DatasetSplit | None
    source: str  # "holdout" (slice of training data) or "split" (the named split)
    note: str = ""  # why a recorded slice was not used, if it was not

    def describe(self) -> str:
        rep = f"reporting on '{self.reporting.name}' ({len(self.reporting)} images)" if self.reporting else \
            "claims cross-fitted on it"
        return f"tuning on '{self.tuning.name}' ({len(self.tuning)} images, {self.source}); {rep}" + \
            (f" ({self.note})" if self.note else "")


def split_record(ds: DatasetSplit, role: str, method: str | None = None) -> dict[str, Any]:
    """What a fitted fact or a claim stores about the data: name, count, class counts, fingerprint."""
    out = {"split": ds.name, "role": role, "images": len(ds), "class_counts": ds.class_counts(),
           "fingerprint": ds.fingerprint()}
    if method:
        out["method"] = method
    return out


def usable_slice(manifest: dict[str, Any] | ManifestReader) -> tuple[dict[str, Any] | None, str]:
    """(the tuning-slice record that may tune, or None; why a recorded slice may not, or "")."""
    m = read_manifest(manifest)
    record = m.tuning_split
    if record and m.training.get("init_excludes_tuning") is False:
        return None, ("the checkpoint's tuning slice was seen by the weights it was initialised from: "
                      "its numbers would be in-sample, so the named split tunes")
    return record, ""


def resolve_roles(manifest: dict[str, Any] | ManifestReader, data: str | Path, split: str = "val",
                  report_split: str | None = None) -> Roles:
    """Tuning and reporting splits for a bundle (see the module docstring)."""
    from dsedge.data import available_splits, load_split

    m = read_manifest(manifest)
    classes = m.classes
    record, note = usable_slice(m)
    if record:
        from dsedge.data.splits import tuning_split_from_record

        tuning = tuning_split_from_record(data, record)
        name = report_split or split
        reporting = load_split(data, name, classes=classes) if name in available_splits(data) else None
        if reporting is not None and len(reporting) == 0:
            reporting = None
        return Roles(tuning, reporting, "holdout")
    tuning = load_split(data, split, classes=classes)
    if len(tuning) == 0:
        raise DataError(f"{data}: the '{split}' split is empty")
    reporting = None
    if report_split and report_split != split:
        reporting = load_split(data, report_split, classes=classes)
        def files(ds: DatasetSplit) -> set[tuple[str, int]]:  # the same file: same name and size
            return {(s.path.name, s.path.stat().st_size) for s in ds.samples}

        overlap = files(tuning) & files(reporting)
        if overlap:
            raise DataError(f"the reporting split '{report_split}' shares {len(overlap)} images with the tuning "
                            f"split '{split}'", "report on images the fitting never saw")
    return Roles(tuning, reporting, "split", note)


def stratified_halves(ds: DatasetSplit, seed: int = HALF_SEED) -> tuple[DatasetSplit, DatasetSplit]:
    """Two disjoint halves of a split, each class divided evenly, seeded: one tunes, one reports."""
    labels = np.asarray(ds.labels)
    rng = np.random.default_rng(seed)
    first: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        first.extend(idx[: (len(idx) + 1) // 2].tolist())
    chosen = set(first)
    a = [s for i, s in enumerate(ds.samples) if i in chosen]
    b = [s for i, s in enumerate(ds.samples) if i not in chosen]
    return (DatasetSplit(f"{ds.name}-A", ds.classes, a, ds.source, ds.root),
            DatasetSplit(f"{ds.name}-B", ds.classes, b, ds.source, ds.root))
