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
| not_dermoscopy | any of the five traits below               | see below                |

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
in the manifest's `clinical.quality`; `dsedge.runtime.quality.check_files` runs the same checks
over training data.

"Not a dermoscopy image" (issue 26: pixel noise was classified NV, a stripe pattern "refer"):
five cheap colour and texture traits every real image has, measured on the RGB image scaled
*down* to a 256 px shorter side (never up: upscaling smooths noise into texture). Only raised
when no other check failed (a black frame is "too_dark", not "not a dermoscopy image"):

| trait (note)                | measure                                                       | fails when   |
|-----------------------------|---------------------------------------------------------------|--------------|
| noise-like                  | lag-1 autocorrelation of luminance                            | < 0.6        |
| periodic pattern            | log10 peak / ring-median power of the luminance spectrum      | > 6.0        |
| no skin colour              | median HSV saturation of non-dark pixels (a grey image is 0)  | < 0.004      |
| colours skin does not have  | share of saturated green / cyan / blue / violet pixels        | > 0.9        |
| flat colours                | share of non-dark pixels identical to their neighbours        | > 0.6        |

Measured on all 8,141 real images (2026-12-07, `benchmarks/quality_thresholds.py`): autocorrelation
min 0.736 (ISIC val), periodicity max 3.65 (HAM10000), saturation min 0.0078 (HAM10000), foreign
colour max 0.784 (ISIC train: blue-cast images), flat share max 0.387 (ISIC train: black vignettes):
none flagged. The 13 synthetic non-dermoscopy images (uniform and skin-tinted noise 0.003-0.25,
stripes and checkerboards 8.9-17.7, flat blocks and a drawn lesion 0.98 flat, a landscape 0.98
foreign colour, its grey version saturation 0) are all flagged. The saturation margin is thin on
purpose: it only catches images with no colour at all. This is a guard against the wrong kind of
picture, not a detector of every out-of-distribution input (it is not meant to tell a clinical,
non-dermoscopic photograph of skin from a dermoscopy image). `dermoscopy_check: false` in the manifest's `clinical.quality` turns it off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

WORK_SIDE = 256
NOT_DERMOSCOPY = "not_dermoscopy"


@dataclass(frozen=True)
class QualityThresholds:
    """Where each check fails (see the module docstring for how they were chosen)."""

    min_side: int = 128
    max_aspect: float = 2.0
    min_brightness: float = 30.0
    max_brightness: float = 245.0
    min_contrast: float = 3.0
    min_sharpness: float = 3.0
    dermoscopy_check: bool = True
    min_autocorrelation: float = 0.6
    max_periodicity: float = 6.0
    min_saturation: float = 0.004
    max_foreign_colour: float = 0.9
    max_flat_share: float = 0.6

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


TEXTURE_SIDE = 256


def work_rgb(image: Image.Image) -> np.ndarray:
    """RGB (uint8) with the shorter side scaled *down* to at most `TEXTURE_SIDE`; never upscaled,
    because upscaling would smooth pixel noise into something that looks like texture."""
    w, h = image.size
    scale = min(1.0, TEXTURE_SIDE / min(w, h))
    rgb = image.convert("RGB")
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR,
                         reducing_gap=2.0)
    return np.asarray(rgb)


def autocorrelation(gray: np.ndarray) -> float:
    """Lag-1 correlation of neighbouring pixels (mean of rows and columns): ~1 for photographs,
    ~0 for pixel noise. A flat image has no variance: 1.0 (the contrast check catches it)."""
    x = gray - gray.mean()
    var = float((x * x).mean())
    if var < 1e-6 or min(x.shape) < 2:
        return 1.0
    return float(((x[:, 1:] * x[:, :-1]).mean() + (x[1:] * x[:-1]).mean()) / (2 * var))


def periodicity(gray: np.ndarray) -> float:
    """log10 of how far the strongest frequency of the luminance spectrum stands above the median
    power of its ring (all frequencies of the same radius, i.e. the same scale in every direction).

    A photograph's spectrum decays smoothly with radius, so no frequency stands far above its
    ring (ISIC / HAM10000: at most 10^2.2); stripes and checkerboards put their energy into a few
    isolated frequencies, 10^9 and more above their ring. The mean is removed and a Hann window
    applied so the image's edges do not make a false peak; the radii below 4 cycles per image
    (DC, the window's leakage, the lesion itself) are left out.
    """
    h, w = gray.shape
    if min(h, w) < 16:
        return 0.0
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.rfft2((gray - gray.mean()) * win)) ** 2
    side = min(h, w)
    fy = np.fft.fftfreq(h)[:, None] * side
    fx = np.fft.rfftfreq(w)[None, :] * side
    ring = np.rint(np.hypot(fy, fx)).astype(int)
    keep = ring >= 4
    rings, values = ring[keep], power[keep]
    order = np.argsort(rings, kind="stable")
    rings, values = rings[order], values[order]
    starts = np.flatnonzero(np.r_[True, rings[1:] != rings[:-1]])
    medians = np.array([np.median(v) for v in np.split(values, starts[1:])])
    ratio = values / np.maximum(np.repeat(medians, np.diff(np.r_[starts, len(values)])), 1e-12)
    return float(np.log10(max(float(ratio.max()), 1e-12)))


def colour_measures(rgb: np.ndarray) -> dict[str, float]:
    """Colour statistics that skin and pigment share: saturation, and the share of pixels of
    saturated green / cyan / blue / violet (hue 65-290 degrees), colours skin and melanin never have
    in bulk (a sky, grass, a screen, a slide), plus the share of non-dark pixels whose colour does
    not change at all from their neighbours (flat colours of drawings and synthetic frames)."""
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), dtype=np.float32)
    hue, sat, val = hsv[..., 0] * (360.0 / 256.0), hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    foreign = (sat > 0.35) & (val > 0.25) & (hue > 65) & (hue < 290)
    lit = val > 0.15
    x = rgb.astype(np.int16)
    still = np.ones(rgb.shape[:2], dtype=bool)
    if min(rgb.shape[:2]) >= 3:
        step = np.zeros(rgb.shape[:2], dtype=np.int16)
        step[:, 1:] = np.abs(x[:, 1:] - x[:, :-1]).max(axis=2)
        step[1:, :] = np.maximum(step[1:, :], np.abs(x[1:] - x[:-1]).max(axis=2))
        still = step == 0
    return {
        "saturation": float(np.median(sat[lit])) if lit.any() else 0.0,
        "foreign_colour": float(foreign.mean()),
        "flat_share": float((still & lit).sum() / max(1, lit.sum())),
    }


def dermoscopy_measures(image: Image.Image) -> dict[str, float]:
    """Measures of the "not a dermoscopy image" check (see `not_dermoscopy_reasons`)."""
    rgb = work_rgb(image)
    gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    return {"autocorrelation": autocorrelation(gray), "periodicity": periodicity(gray), **colour_measures(rgb)}


def not_dermoscopy_reasons(m: dict[str, float], t: QualityThresholds) -> list[str]:
    """Which dermoscopy traits an image lacks: noise, a periodic pattern, grey, foreign colours, flat colours."""
    reasons = []
    if m["autocorrelation"] < t.min_autocorrelation:
        reasons.append("noise-like")
    if m["periodicity"] > t.max_periodicity:
        reasons.append("periodic pattern")
    if m["saturation"] < t.min_saturation:
        reasons.append("no skin colour")
    if m["foreign_colour"] > t.max_foreign_colour:
        reasons.append("colours skin does not have")
    if m["flat_share"] > t.max_flat_share:
        reasons.append("flat colours")
    return reasons


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
        **dermoscopy_measures(image),
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
    notes = []
    if t.dermoscopy_check:
        reasons = not_dermoscopy_reasons(m, t)
        if reasons and not flags:  # a black or blank frame is already flagged for what it is
            flags.append(NOT_DERMOSCOPY)
            notes.append(f"not a dermoscopy image: {', '.join(reasons)}")
    return QualityReport({k: round(v, 4) for k, v in m.items()}, flags, notes)


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
