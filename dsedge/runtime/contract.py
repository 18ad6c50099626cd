"""The preprocessing contract: what `dsedge.runtime.preprocess` does to a file, exactly, as data.

A device that is not Python (firmware, a C++ app) must produce the same input tensor as the
runtime, or its decisions drift: a plain bilinear resize instead of Pillow's antialiased one moved
P(MEL) from 0.554 to 0.652 on a 3,872 px image (issue 23). The manifest's `preprocessing` block
names the parameters; this block (the manifest's `preprocessing_contract`, written at export) names
the algorithm, step by step, with every rounding rule, so another implementation can be written
from it and checked against the bundle's golden vectors (`vectors/`, `dsedge predict
--check-vectors`). docs/PREPROCESSING.md explains each step; `examples/cpp/` implements it.

Torch-free; it only describes, the pixels are still computed by Pillow and NumPy.
"""

from __future__ import annotations

from typing import Any

#: Bumped whenever a step below changes meaning (a runtime that knows version N refuses N+1).
CONTRACT_VERSION = 1
#: Largest |difference| of the normalised input tensor another implementation may show.
TENSOR_TOLERANCE = 1e-3

#: Pillow's fixed-point precision of 8-bit resampling (Resample.c: 32 - 8 - 2).
PRECISION_BITS = 22


def preprocessing_contract(preprocessing: dict[str, Any]) -> dict[str, Any]:
    """The manifest's `preprocessing_contract` for a `preprocessing` block (see the module docstring)."""
    resize, crop = int(preprocessing["resize"]), int(preprocessing["crop"])
    filt = str(preprocessing.get("interpolation", "bilinear"))
    support = {"bilinear": 1.0, "bicubic": 2.0}[filt]
    return {
        "version": CONTRACT_VERSION,
        "reference": "dsedge.utils.images.load_image + dsedge.runtime.preprocess.preprocess_image (Pillow, NumPy)",
        "decode": "8-bit baseline/progressive JPEG decoded with libjpeg(-turbo) defaults: ISLOW IDCT, "
                  "fancy (triangular) chroma upsampling, YCbCr->RGB by the JFIF equations",
        "orientation": "EXIF tag 0x0112 applied before anything else (1 none, 2 mirror, 3 rotate 180, "
                       "4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise)",
        "color": {
            "icc": "an embedded ICC profile is converted to sRGB (LittleCMS, perceptual intent); "
                   "a profile that cannot be parsed is ignored",
            "grayscale": "L -> RGB by copying the value into R, G and B",
            "16-bit": "I;16 -> 8-bit as floor(v / 257 + 0.5)",
            "alpha": "dropped (RGBA -> RGB, no blending)",
            "cmyk": "Pillow's CMYK -> RGB conversion",
        },
        "resize": {
            "target": "shorter side -> resize; longer side -> floor(resize * longer / shorter) "
                      "(float64 division, truncated), the same for a square image",
            "shorter_side": resize,
            "filter": f"{'triangle' if filt == 'bilinear' else 'bicubic (a=-0.5)'}, support {support} "
                      "scaled by the downscale factor (antialiased; no scaling when enlarging)",
            "filter_support": support,
            "coefficients": "scale = in / out; center = (i + 0.5) * scale; "
                            "lo = max(0, int(center - support * max(scale, 1) + 0.5)); "
                            "hi = min(in, int(center + support * max(scale, 1) + 0.5)); "
                            "w_j = filter((j - center + 0.5) / max(scale, 1)) for j in [lo, hi), "
                            "normalised to sum 1 (float64), then round-half-away-from-zero to "
                            f"int32 x 2^{PRECISION_BITS}",
            "fixed_point_bits": PRECISION_BITS,
            "passes": "horizontal first (skipped when the width does not change), result rounded to uint8: "
                      f"clip((2^{PRECISION_BITS - 1} + sum(w_j * p_j)) >> {PRECISION_BITS}, 0, 255); "
                      "then vertical (skipped when the height does not change), same rounding",
        },
        "crop": {
            "size": crop,
            "offset": "left = round((width - crop) / 2), top = round((height - crop) / 2), "
                      "round half to even (Python's round: 2.5 -> 2, 3.5 -> 4)",
        },
        "normalise": {"formula": "(float32(v) / 255 - mean[c]) / std[c], every step in float32",
                      "mean": list(preprocessing["mean"]), "std": list(preprocessing["std"])},
        "layout": "NCHW, channels R, G, B",
        "dtype": "float32",
        "tensor_tolerance": TENSOR_TOLERANCE,
    }
