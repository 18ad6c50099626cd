"""Dataset description shared by every layout: a list of (image path, class index) samples. Torch-free."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dsedge import ISIC2017_CLASSES, MELANOMA_CLASS

#: Label spellings accepted in folder names and `path,label` CSVs, mapped to the ISIC class codes.
LABEL_ALIASES = {
    "mel": MELANOMA_CLASS,
    "melanoma": MELANOMA_CLASS,
    "nv": "NV",
    "nevus": "NV",
    "naevus": "NV",
    "sk": "SK",
    "seborrheic_keratosis": "SK",
    "seborrheic keratosis": "SK",
    "bkl": "SK",  # HAM10000/ISIC 2018 "benign keratosis-like" (includes SK)
}

#: Other diagnosis codes of ISIC 2018/2019 and HAM10000 exports: known labels, kept as written (own classes).
OTHER_KNOWN_LABELS = ("akiec", "ak", "bcc", "df", "vasc", "scc")

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class DatasetSplit:
    """The samples of one split plus the class names and anything suspicious found while loading."""

    name: str
    classes: list[str]
    samples: list[Sample]
    source: str  # "isic2017", "folders", "csv"
    root: Path
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def class_counts(self) -> dict[str, int]:
        c = Counter(self.labels)
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}

    def fingerprint(self) -> str:
        """sha256 over sorted (file name, label, size): identifies the data a model saw."""
        h = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: str(s.path)):
            size = s.path.stat().st_size if s.path.exists() else -1
            h.update(f"{s.path.name}\t{s.label}\t{size}\n".encode())
        return h.hexdigest()


def normalise_label(label: str) -> str:
    key = label.strip()
    return LABEL_ALIASES.get(key.lower(), key)


def _known_spellings() -> dict[str, str]:
    """Every accepted spelling (lower case) -> its class code."""
    codes = {c.lower(): c for c in ISIC2017_CLASSES}
    return {**codes, **LABEL_ALIASES, **{c: c for c in OTHER_KNOWN_LABELS}}


def closest_label(label: str) -> str | None:
    """The known spelling nearest to an unknown `label` ('melanomaa' -> 'melanoma (MEL)'), or None."""
    import difflib

    known = _known_spellings()
    match = difflib.get_close_matches(label.strip().lower(), list(known), n=1, cutoff=0.6)
    if not match:
        return None
    return match[0] if known[match[0]] == match[0] else f"{match[0]} ({known[match[0]]})"


def unknown_label_problems(first_seen: dict[str, str]) -> dict[str, str]:
    """Raw label -> problem, for labels no known spelling matches; `first_seen` maps each raw label to where it first appears.

    A typo ('melanomaa') used to become a 4th class silently. A label is an error
    when it is close to a known one, or when the data also uses known labels (it
    then cannot be a class of its own by design); data whose labels are all its
    own (cats, dogs) is left alone.
    """
    known = _known_spellings()
    unknown = {raw: where for raw, where in first_seen.items() if raw.strip().lower() not in known}
    uses_known = len(unknown) < len(first_seen)
    problems = {}
    for raw, where in sorted(unknown.items()):
        near = closest_label(raw)
        if near or uses_known:
            hint = f"; did you mean '{near}'?" if near else ""
            problems[raw] = f"unknown label '{raw}' ({where}){hint}"
    return problems


def class_order(labels: set[str]) -> list[str]:
    """MEL, NV, SK order when the labels are ISIC's; otherwise sorted names."""
    if labels <= set(ISIC2017_CLASSES):
        return list(ISIC2017_CLASSES)
    return sorted(labels)


def concat_splits(first: DatasetSplit, *more: DatasetSplit) -> DatasetSplit:
    """One training split from several sources (e.g. ISIC 2017 train + HAM10000); classes must agree.

    Each extra split must already be loaded with `classes=first.classes`, so a label
    index means the same class in every part.
    """
    for other in more:
        if other.classes != first.classes:
            raise ValueError(f"class lists differ: {first.classes} vs {other.classes}")
    samples = list(first.samples)
    warnings = list(first.warnings)
    for other in more:
        samples.extend(other.samples)
        warnings.extend(other.warnings)
    source = "+".join([first.source, *(o.source for o in more)])
    return DatasetSplit(first.name, first.classes, samples, source, first.root, warnings)
