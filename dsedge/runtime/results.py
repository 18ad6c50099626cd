"""What goes into and comes out of a predict run: input expansion (files, folders, globs) and
the flat CSV a spreadsheet or hospital system reads. Torch-free."""

from __future__ import annotations

import csv
import glob
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsedge.utils.images import is_image_file

CSV_FIELDS = ("image", "decision", "melanoma_risk", "uncertain", "top_class", "top_probability",
              "quality_flags", "error", "model", "model_version", "bundle_sha256", "heatmap")


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Folders -> their image files (sorted, not recursive); globs -> matches; other paths kept as
    given, so a missing file still gets its own error entry instead of vanishing."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and is_image_file(f))
        elif not p.exists() and glob.has_magic(str(item)):
            out += sorted(Path(m) for m in glob.glob(str(item)) if is_image_file(m))
        else:
            out.append(p)
    return out


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
