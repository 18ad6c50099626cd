"""Input-quality checks before inference: a black frame, a 20x10 px crop or a blurred lesion must
get "cannot assess", not a confident label. Torch-free (NumPy + Pillow).

Every measure is taken on the grayscale image scaled so its shorter side is `WORK_SIDE` (256,
the model's resize), so the numbers do not depend on the camera's resolution:

| check          | measure                                   | fails when               |
|----------------|-------------------------------------------|--------------------------|
| too_small      | shorter side of the stored image, px       | < min_side (128)         |
| extreme_aspect | longer / shorter side                      | > max_aspect (2.0)       |
| too_dark       | mean luminance (0-255)                     | < min_brightness (30)    |
| too_bright     | mean luminance (0-255)                     | > max_brightness (245)   |
| low_contrast   | std of luminance (blank, uniform frames)   | < min_contrast (3.0)     |
| blurry         | variance of the 4-neighbour Laplacian      | < min_sharpness (3.0)    |

Thresholds were chosen on real images with `benchmarks/quality_thresholds.py` (2026-11-30):

| set (images)                       | brightness min / max | contrast min | sharpness min / p1 | aspect max |
|------------------------------------|----------------------|--------------|--------------------|------------|
| ISIC 2017 train (2,000, 256 px)    | 75.6 / 239.9         | 5.88         | 5.24 / 10.6        | 1.0        |
| ISIC 2017 val (150)                | 89.5 / 202.0         | 7.16         | 9.19 / 14.9        | 1.0        |
| ISIC originals (7, up to 3872 px)  | 120.0 / 193.7        | 18.3         | 10.2               | 1.51       |
| HAM10000 (5,984, 224 px)           | 45.9 / 229.8         | 4.94         | 3.33 / 6.57        | 1.0        |
| synthetic black / white / grey     | 0 / 255 / 121        | 0            | 0                  | -          |
| 84 real images, Gaussian blur r=2 / 3 / 4 px at 256 px | - | -       | max 6.35 / 2.96 / 2.35 | -      |

With these thresholds none of the 8,141 real images is flagged; black, near-black, white,
uniform grey, 20x10 px and 4:1 inputs are; blur of radius >= 3 px at model scale is caught in
84/84 images (radius 2: 71/84, radius 1: 1/84). The blur margin is thin (HAM10000's softest
image measures 3.33): blur detection is a safety net for grossly defocused frames, not a
focus meter. Real dermoscopy is 1:1 to 16:9 (ISIC originals up to 1.5:1); beyond 2:1 the centre
crop drops half the image, so the lesion may not be in view. A bundle can override any threshold
in `manifest["clinical"]["quality"]`; `dsedge.runtime.quality.check_files` runs the same checks
over training data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

WORK_SIDE = 256


@dataclass(frozen=True)
class QualityThresholds:
    """Where each check fails (see the module docstring for how they were chosen)."""

    min_side: int = 128
    max_aspect: float = 2.0
    min_brightness: float = 30.0
    max_brightness: float = 245.0
    min_contrast: float = 3.0
    min_sharpness: float = 3.0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> QualityThresholds:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QualityReport:
    """Measures, the checks that failed (`flags`) and what loading did (EXIF, ICC)."""

    measures: dict[str, float]
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.flags

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "flags": list(self.flags), "measures": dict(self.measures), "notes": list(self.notes)}


def geometry_flags(width: int, height: int, t: QualityThresholds) -> list[str]:
    """Checks that need only the header size: run before decoding anything big."""
    flags = []
    if min(width, height) < t.min_side:
        flags.append("too_small")
    if max(width, height) / max(1, min(width, height)) > t.max_aspect:
        flags.append("extreme_aspect")
    return flags


def work_gray(image: Image.Image) -> np.ndarray:
    """Luminance (float32, 0-255) with the shorter side scaled to `WORK_SIDE`."""
    w, h = image.size
    scale = WORK_SIDE / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    gray = image.convert("L")
    if gray.size != size:
        gray = gray.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(gray, dtype=np.float32)


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low when the image has no sharp edges (blur, blank)."""
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    lap = (gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]) - 4.0 * gray[1:-1, 1:-1]
    return float(lap.var())


def measure(image: Image.Image) -> dict[str, float]:
    """Every measure the checks use (also what `benchmarks/quality_thresholds.py` records)."""
    w, h = image.size
    gray = work_gray(image)
    return {
        "width": float(w),
        "height": float(h),
        "aspect": max(w, h) / max(1, min(w, h)),
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "sharpness": laplacian_variance(gray),
    }


def assess(image: Image.Image, thresholds: QualityThresholds | None = None) -> QualityReport:
    """Run every check on a decoded RGB image; `report.flags` lists the failures."""
    t = thresholds or QualityThresholds()
    m = measure(image)
    flags = geometry_flags(int(m["width"]), int(m["height"]), t)
    if m["brightness"] < t.min_brightness:
        flags.append("too_dark")
    if m["brightness"] > t.max_brightness:
        flags.append("too_bright")
    if m["contrast"] < t.min_contrast:
        flags.append("low_contrast")
    if m["sharpness"] < t.min_sharpness:
        flags.append("blurry")
    return QualityReport({k: round(v, 3) for k, v in m.items()}, flags)


def check_files(paths: list, thresholds: QualityThresholds | None = None) -> dict[str, list[str]]:
    """Flags per image file (only files that fail; unreadable ones get "unreadable"): for data checks."""
    from dsedge.errors import DataError
    from dsedge.utils.images import load_rgb

    out: dict[str, list[str]] = {}
    for p in paths:
        try:
            report = assess(load_rgb(p), thresholds)
        except DataError:
            out[str(p)] = ["unreadable"]
            continue
        if report.flags:
            out[str(p)] = report.flags
    return out


def assess_size(width: int, height: int, thresholds: QualityThresholds | None = None) -> QualityReport:
    """The geometry-only report for an image that is not decoded (too small / too thin)."""
    t = thresholds or QualityThresholds()
    aspect = max(width, height) / max(1, min(width, height))
    return QualityReport({"width": float(width), "height": float(height), "aspect": round(aspect, 3)},
                         geometry_flags(width, height, t))
