"""What goes into and comes out of a predict run: input expansion (files, folders, globs) and
the flat CSV a spreadsheet or hospital system reads. Torch-free."""

from __future__ import annotations

import csv
import glob
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsedge.errors import DataError
from dsedge.utils.images import IMAGE_EXTENSIONS, is_image_file

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
CSV_FIELDS = ("image", "decision", "melanoma_risk", "uncertain", "top_class", "top_probability",
              "quality_flags", "error", "model", "model_version", "bundle_sha256", "heatmap")


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Folders -> their image files (sorted, not recursive); globs -> matches; other paths kept as
    given, so a missing file still gets its own error entry instead of vanishing.

    Nothing is dropped silently: a folder's dangling `.jpg` symlink is kept (and reported as
    broken by the predictor), and a glob that matches nothing, a folder without images or a URL
    raise `DataError` — an empty table with exit 0 would read as "all clear".
    """
    out: list[Path] = []
    for item in inputs:
        text = str(item)
        if _URL.match(text):
            raise DataError(f"URLs are not supported: {text}",
                            "download the image first, then pass the file (e.g. `curl -O URL`)")
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if is_image_file(f) and (f.is_file() or _dangling(f)))
            if not found:
                raise DataError(f"no image files in folder {p}",
                                f"expected {', '.join(IMAGE_EXTENSIONS)} files directly inside it (not recursive)")
            out += found
        elif not p.exists() and not p.is_symlink() and glob.has_magic(text):
            found = sorted(Path(m) for m in glob.glob(text) if is_image_file(m))
            if not found:
                raise DataError(f"no image file matches {text}", "check the pattern; quote it so the shell "
                                "does not expand it, e.g. 'scans/*.jpg'")
            out += found
        else:
            out.append(p)
    return out


def _dangling(path: Path) -> bool:
    """A symlink whose target is gone: kept as an input so its error is shown, not skipped."""
    return path.is_symlink() and not path.exists()


def results_csv(results: Sequence[dict[str, Any]], classes: Sequence[str]) -> str:
    """One row per image: the decision fields, each calibrated probability, quality and identity."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*CSV_FIELDS, *(f"p_{c}" for c in classes)])
    for r in results:
        flags = (r.get("quality") or {}).get("flags") or []
        row = {**r, "quality_flags": ";".join(flags)}
        probs = r.get("probabilities") or {}
        writer.writerow([_cell(row.get(k)) for k in CSV_FIELDS] + [_cell(probs.get(c)) for c in classes])
    return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def run_summary(results: Sequence[dict[str, Any]], classes: Sequence[str],
                manifest: dict[str, Any], artifact: str | None = None) -> dict[str, Any]:
    """Counts per decision and the operating point behind "refer", for the end of a predict run.

    A table of 200 rows does not say how many were referred; and a "refer" means nothing without
    the threshold and the sensitivity claimed for it, on which split.
    """
    from dsedge.runtime.decision import clinical_claim_line, decision_counts

    entry = (manifest.get("artifacts") or {}).get(artifact or "") or {}
    engine = {"artifact": artifact, "precision": entry.get("precision"),
              "int8_mac_fraction": entry.get("int8_mac_fraction")} if artifact else None
    return {"images": len(results), "counts": decision_counts(list(results), list(classes)),
            "operating_point": clinical_claim_line(manifest), "engine": engine}


def summary_line(summary: dict[str, Any]) -> str:
    """'3 images: refer 1 (refer when P(MEL) >= 0.077; claimed ...), NV 1, SK 0, cannot assess 1, errors 0'."""
    from dsedge.runtime.decision import REFER

    point = summary.get("operating_point")
    items = [f"{k} {v}" + (f" ({point})" if k == REFER and point else "") for k, v in summary["counts"].items()]
    line = f"{summary['images']} image{'s' if summary['images'] != 1 else ''}: {', '.join(items)}"
    engine = summary.get("engine") or {}
    if engine.get("int8_mac_fraction") is not None:  # an "INT8" file says how much of it is INT8
        line += f"; {engine['artifact']}: {100 * engine['int8_mac_fraction']:.0f} % of MACs in INT8"
    return line
