"""End-to-end latency of one image, split the way a device pays for it: decode / preprocess / infer / post.

The bench times the engine on a ready tensor; a dermatoscope also decodes a 12-megapixel JPEG,
checks it, orients it and downscales it on every image (issue 23). `time_image` walks the same
path as `Predictor` — `load_image` (read, decode, EXIF orientation, sRGB), the quality checks,
`preprocess_image`, one engine call on a batch of one, calibrated probabilities and the decision —
and times each stage with `time.perf_counter`. "pre" = decode + quality + preprocess.
Torch-free.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.runtime.preprocess import preprocess_image
from dsedge.runtime.quality import assess
from dsedge.utils.images import load_image

STAGES = ("decode_ms", "quality_ms", "preprocess_ms", "infer_ms", "post_ms")


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds per stage for one image (0 for a stage that was not run)."""

    image: str
    decode_ms: float = 0.0
    quality_ms: float = 0.0
    preprocess_ms: float = 0.0
    infer_ms: float = 0.0
    post_ms: float = 0.0

    @property
    def pre_ms(self) -> float:
        return self.decode_ms + self.quality_ms + self.preprocess_ms

    @property
    def total_ms(self) -> float:
        return self.pre_ms + self.infer_ms + self.post_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pre_ms": self.pre_ms, "total_ms": self.total_ms}


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def time_tensor(predictor: Any, tensor: np.ndarray, name: str = "tensor") -> StageTimes:
    """Inference and post-processing only, on a preprocessed 3 x H x W tensor (what the bench times)."""
    t0 = time.perf_counter()
    logits = predictor.infer(tensor[None].astype(np.float32, copy=False))["logits"]
    infer = _ms(t0)
    t0 = time.perf_counter()
    predictor.policy.decide(predictor.policy.probabilities(logits)[0])
    return StageTimes(name, infer_ms=infer, post_ms=_ms(t0))


def time_image(predictor: Any, path: str | Path, quality: bool | None = None) -> StageTimes:
    """Every stage of one image file through `predictor` (a `dsedge.runtime.Predictor`).

    `quality` defaults to the predictor's own setting. The image is timed even when a quality
    check fails, so the split is always complete.
    """
    t0 = time.perf_counter()
    loaded = load_image(path)
    decode = _ms(t0)
    checks = 0.0
    if predictor.quality_checks if quality is None else quality:
        t0 = time.perf_counter()
        assess(loaded.image, predictor.thresholds)
        checks = _ms(t0)
    t0 = time.perf_counter()
    tensor = preprocess_image(loaded.image, predictor.preprocessing)
    pre = _ms(t0)
    rest = time_tensor(predictor, tensor)
    return StageTimes(str(path), decode, checks, pre, rest.infer_ms, rest.post_ms)


def time_images(predictor: Any, paths: Sequence[str | Path], repeats: int = 1, warmup: int = 1) -> list[StageTimes]:
    """`time_image` for each path: `warmup` untimed passes over the first image (first-call costs),
    then the per-stage median of `repeats` passes for each image."""
    if not paths:
        return []
    for _ in range(warmup):
        time_image(predictor, paths[0])
    out = []
    for p in paths:
        runs = [time_image(predictor, p) for _ in range(max(1, repeats))]
        out.append(StageTimes(str(p), *(statistics.median(getattr(r, s) for r in runs) for s in STAGES)))
    return out


def attach_timings(predictor: Any, results: list[dict[str, Any]], paths: Sequence[str | Path]) -> list[StageTimes]:
    """A second, timed pass over the images `predictor.predict` classified without error: each such
    result gets `timings_ms` (its stage split); returns the rows, in order."""
    done = [(r, p) for r, p in zip(results, paths, strict=True) if not r.get("error")]
    rows = time_images(predictor, [p for _, p in done])
    for (result, _), row in zip(done, rows, strict=True):
        result["timings_ms"] = row.to_dict()
    return rows


def median_times(rows: Sequence[StageTimes], name: str = "median") -> StageTimes:
    """Per-stage medians over several images."""
    return StageTimes(name, *(statistics.median(getattr(r, s) for r in rows) for s in STAGES)) if rows else StageTimes(name)


def format_timings(rows: Sequence[StageTimes]) -> str:
    """One line per image: 'pre / infer / post ms' with the pre split into decode + quality + preprocess."""
    lines = ["pre / infer / post ms (pre = decode + quality + preprocess):"]
    for r in rows:
        lines.append(f"  {Path(r.image).name}: {r.pre_ms:.2f} / {r.infer_ms:.2f} / {r.post_ms:.2f}  "
                     f"({r.decode_ms:.2f} + {r.quality_ms:.2f} + {r.preprocess_ms:.2f}; total {r.total_ms:.2f})")
    return "\n".join(lines)
