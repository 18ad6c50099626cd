"""`dsedge data check`: counts per split and class, and every problem found in a dataset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dsedge.data import folders, isic
from dsedge.data.loader import available_splits, detect_layout, load_split
from dsedge.data.samples import DatasetSplit
from dsedge.errors import DataError
from dsedge.utils.images import load_rgb


@dataclass
class DataReport:
    root: Path
    layout: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> n
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)  # images needing a mode conversion
    quality: list[str] = field(default_factory=list)  # images the runtime would refuse ("cannot assess")

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "counts": self.counts,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def _verify_images(split: DatasetSplit, report: DataReport, progress: Callable[[int], None] | None,
                   quality: bool = False) -> None:
    from PIL import Image

    from dsedge.runtime.quality import assess  # the runtime's own input-quality checks

    bad = []
    for s in split.samples:
        try:
            with Image.open(s.path) as raw:
                mode = raw.mode
            image = load_rgb(s.path)
            flags = assess(image).flags if quality else []
            if flags:
                report.quality.append(f"{s.path.name} ({', '.join(flags)})")
            if mode != "RGB":
                report.converted.append(f"{s.path.name} ({mode})")
        except DataError as e:
            bad.append(e.message)
        except Exception as e:  # noqa: BLE001 - anything Pillow raises is a bad image
            bad.append(f"{s.path}: {e}")
        if progress:
            progress(1)
    if bad:
        report.errors.append(f"{len(bad)} unreadable image(s) in split '{split.name}': " + "; ".join(bad[:10]))


def check_data(
    root: str | Path,
    verify_images: bool = True,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    quality: bool = False,
) -> DataReport:
    """Scan every split of a dataset; collect counts, errors and warnings (never raises for data problems).

    `quality` also runs the runtime's input-quality checks (`dsedge.runtime.quality`) on every
    decoded image and warns about those `dsedge predict` would answer with "cannot assess".
    """
    p = Path(root)
    report = DataReport(p, detect_layout(p))
    splits: list[DatasetSplit] = []
    for name in available_splits(p):
        try:
            if report.layout == "isic2017":
                split, errs = isic.scan_isic_split(p, name)
                report.errors.extend(errs)
            elif report.layout == "csv":  # every problem, and the usable rows still counted
                split, errs = folders.scan_csv_split(p, name)
                report.errors.extend(errs)
            else:
                split = load_split(p, name)
        except DataError as e:
            report.errors.append(e.message)
            continue
        report.warnings.extend(split.warnings)
        report.counts[name] = split.class_counts()
        missing = [c for c, n in report.counts[name].items() if n == 0]
        if missing and split.samples:
            report.warnings.append(f"split '{name}' has no images of class(es) {', '.join(missing)}")
        splits.append(split)
    if not report.counts and not report.errors:
        report.errors.append(f"{p}: no splits found")
    if verify_images:
        if on_total:
            on_total(sum(len(s) for s in splits))
        for split in splits:
            _verify_images(split, report, progress, quality)
    if report.quality:
        report.warnings.append(
            f"{len(report.quality)} image(s) fail the runtime's quality checks (predict would say 'cannot "
            "assess'): " + ", ".join(report.quality[:10])
        )
    if report.converted:
        report.warnings.append(
            f"{len(report.converted)} image(s) are not 8-bit RGB and will be converted: "
            + ", ".join(report.converted[:10])
        )
    return report
