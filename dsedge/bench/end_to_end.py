"""End-to-end latency rows for bench.md: decode / preprocess / inference / post per image (issue 23).

The bench's rows time an engine on a ready tensor. A device pays for the JPEG decode and the
downscale of a full-size frame too, on every image; `end_to_end` reports that split for a bundle on
given JPEGs (a full-size ISIC image, say) and, as the row the bench already knows, on a tensor.
Without images it uses the bundle's golden-vector JPEGs (`vectors/`: a 12-megapixel frame, an odd
aspect one, a grayscale one), so every bundle can be measured. Stages come from
`dsedge.runtime.timing`; each is the median over `repeats` passes after `warmup` passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsedge.errors import DataError
from dsedge.runtime.predict import Predictor
from dsedge.runtime.preprocess import preprocess_image
from dsedge.runtime.timing import StageTimes, median_times, time_images, time_tensor
from dsedge.utils.images import load_rgb

COLUMNS = ("decode", "quality", "preprocess", "infer", "post", "pre", "total")


@dataclass
class EndToEnd:
    """One backend/precision: per-image split, the tensor-only row, and what ran."""

    backend: str
    precision: str
    device: str
    images: list[StageTimes]
    tensor: StageTimes
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "device": self.device,
                "repeats": self.repeats, "images": [r.to_dict() for r in self.images],
                "median": median_times(self.images).to_dict(), "tensor": self.tensor.to_dict()}

    def to_markdown(self) -> str:
        """A bench.md table: one row per image, the median, and the tensor-only row (ms)."""
        head = f"| input ({self.backend} {self.precision}, {self.device}) | " + " | ".join(COLUMNS) + " |"
        lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
        for r in [*self.images, median_times(self.images, "median of images"), self.tensor]:
            cells = [r.decode_ms, r.quality_ms, r.preprocess_ms, r.infer_ms, r.post_ms, r.pre_ms, r.total_ms]
            lines.append(f"| {Path(r.image).name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
        return "\n".join(lines)


def vector_images(bundle_dir: str | Path) -> list[Path]:
    """The JPEGs of a bundle's golden vectors, in index order."""
    from dsedge.runtime.vectors import VECTORS_DIR, read_index

    index = read_index(Path(bundle_dir))
    return [Path(bundle_dir) / VECTORS_DIR / im["file"] for im in index["images"]]


def end_to_end(
    bundle: str | Path,
    images: Sequence[str | Path] | None = None,
    *,
    backend: str = "auto",
    precision: str | None = None,
    repeats: int = 5,
    warmup: int = 1,
    quality_checks: bool = True,
) -> EndToEnd:
    """Time decode / quality / preprocess / infer / post on each image (default: the bundle's vector JPEGs)."""
    paths = [Path(p) for p in images] if images else vector_images(bundle)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"image not found: {', '.join(missing)}")
    with Predictor(bundle, backend=backend, precision=precision, quality_checks=quality_checks) as predictor:
        rows = time_images(predictor, paths, repeats=repeats, warmup=warmup)
        tensor = preprocess_image(load_rgb(paths[0]), predictor.preprocessing)
        runs = [time_tensor(predictor, tensor, "tensor (inference + post only)") for _ in range(max(1, repeats))]
        info = predictor.info
    return EndToEnd(info.backend, info.precision, info.device, rows,
                    median_times(runs, "tensor (inference + post only)"), repeats)
