"""Class-activation-map overlays from the engine's own `cam` output (torch-free: NumPy + Pillow).

A bundle exported with `dsedge export --cam` has a second graph output `cam` (N x classes x h x w:
the model's input size / 32, e.g. 4 x 4 at 112 px, 7 x 7 at 224 px): the last-stage features
weighted by the classifier's weights, computed inside the graph (Zhou et al. 2016), so TensorRT,
ONNX Runtime and OpenVINO return it from the same call as the logits.

The overlay is drawn on the *full* image, not on the model's 112 px crop: the map covers the
centre crop the model saw, so it is mapped back to original-image coordinates (`crop_box`),
upsampled there with bilinear interpolation of the float map (cell centres aligned, no 8-bit
steps), blended over the image, and the rest of the image (never seen by the model) is dimmed
behind a white frame. A colour bar beside it names the raw CAM values of its ends, so two
overlays can be compared. `cam_report` gives the same map as raw numbers for the JSON result,
with a warning when the hottest region sits on an acquisition artefact (`artefact_warnings`):
on ISIC nevi the strongest evidence is sometimes a coloured sticker or the ruler at the border,
and a heat-map that points there explains a shortcut, not the lesion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dsedge.runtime.preprocess import center_crop_box, resized_size
from dsedge.utils.io import atomic_path

CAM_OUTPUT = "cam"
# blue -> cyan -> green -> yellow -> red (a "jet"-like ramp without matplotlib on the device)
_RAMP = np.array([[0, 0, 143], [0, 128, 255], [0, 200, 80], [255, 220, 0], [220, 0, 0]], dtype=np.float32)
#: Longest side of a drawn overlay: a 12 MP original would make a 20 MB PNG and take seconds.
MAX_DRAW_SIDE = 1024
BAR_WIDTH = 90
#: The hot region: pixels whose normalised map value is at least this.
HOT_LEVEL = 0.8
#: Warn when this share of the hot region is sticker-like colour, or when BORDER_HOT_SHARE of it lies
#: in the outer BORDER_SHARE of the model's view (a map peaking in a corner cell; an edge cell is not enough).
ARTEFACT_SHARE = 0.3
BORDER_SHARE = 0.06
BORDER_HOT_SHARE = 0.5


def normalise(cam: np.ndarray) -> np.ndarray:
    """One class's map (h x w) scaled to [0, 1]; a flat map becomes all zeros."""
    cam = np.asarray(cam, dtype=np.float32)
    lo, hi = float(cam.min()), float(cam.max())
    return np.zeros_like(cam) if hi - lo < 1e-12 else (cam - lo) / (hi - lo)


def colorize(heat: np.ndarray) -> np.ndarray:
    """[0, 1] map (H x W) -> uint8 RGB (H x W x 3) on the blue-to-red ramp."""
    pos = np.clip(heat, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


def crop_box(width: int, height: int, cfg: dict[str, Any]) -> tuple[float, float, float, float]:
    """The model's centre crop in original-image pixels (left, top, right, bottom), floats.

    Preprocessing resizes the shorter side to `resize` and crops `crop` in the middle; dividing
    that box by the resize factor of each axis puts it back on the image the user gave.
    """
    w, h = resized_size(width, height, int(cfg["resize"]))
    left, top, right, bottom = center_crop_box(w, h, int(cfg["crop"]))
    sx, sy = width / w, height / h
    return left * sx, top * sy, right * sx, bottom * sy


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a float map to (width, height), values kept as floats (no 8-bit steps)."""
    img = Image.fromarray(np.asarray(cam, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _draw_scale(image: Image.Image) -> float:
    return min(1.0, MAX_DRAW_SIDE / max(image.size))


def heat_on_image(image: Image.Image, cam: np.ndarray, cfg: dict[str, Any],
                  scale: float = 1.0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Normalised map over the crop, placed in image coordinates at `scale`: (H x W map, integer box).

    Pixels outside the crop are NaN: the model never saw them.
    """
    width, height = round(image.width * scale), round(image.height * scale)
    box = tuple(round(v * scale) for v in crop_box(image.width, image.height, cfg))
    left, top = max(0, box[0]), max(0, box[1])
    right, bottom = min(width, box[2]), min(height, box[3])
    full = np.full((height, width), np.nan, dtype=np.float32)
    inner = upsample(normalise(cam), (max(1, box[2] - box[0]), max(1, box[3] - box[1])))
    full[top:bottom, left:right] = inner[top - box[1]:bottom - box[1], left - box[0]:right - box[0]]
    return full, (left, top, right, bottom)


def overlay(image: Image.Image, cam: np.ndarray, cfg: dict[str, Any], alpha: float = 0.45,
            label: str = "") -> Image.Image:
    """The full image with the map blended over the model's crop, the rest dimmed, and a colour bar."""
    scale = _draw_scale(image)
    rgb = image.convert("RGB")
    if scale < 1.0:
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
    heat, box = heat_on_image(image, cam, cfg, scale)
    base = np.asarray(rgb, dtype=np.float32)
    seen = ~np.isnan(heat)
    colour = colorize(np.nan_to_num(heat)).astype(np.float32)
    out = np.where(seen[..., None], base * (1 - alpha) + colour * alpha, base * 0.5)
    drawn = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    ImageDraw.Draw(drawn).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=(255, 255, 255), width=2)
    cam = np.asarray(cam, dtype=np.float32)
    return with_colour_bar(drawn, float(cam.min()), float(cam.max()), label)


def with_colour_bar(image: Image.Image, low: float, high: float, label: str = "") -> Image.Image:
    """`image` with a vertical colour bar on its right, its ends labelled with the raw CAM values."""
    h = image.height
    canvas = Image.new("RGB", (image.width + BAR_WIDTH, h), (255, 255, 255))
    canvas.paste(image, (0, 0))
    margin = max(12, h // 12)
    bar_h = max(2, h - 2 * margin)
    ramp = colorize(np.linspace(1.0, 0.0, bar_h, dtype=np.float32)[:, None].repeat(16, axis=1))
    x0 = image.width + 8
    canvas.paste(Image.fromarray(ramp), (x0, margin))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([x0 - 1, margin - 1, x0 + 16, margin + bar_h], outline=(0, 0, 0))
    font = ImageFont.load_default()
    draw.text((x0 + 20, margin - 6), f"{high:.3g}", fill=(0, 0, 0), font=font)
    draw.text((x0 + 20, margin + bar_h - 6), f"{low:.3g}", fill=(0, 0, 0), font=font)
    draw.text((x0, 0), f"CAM {label}".strip(), fill=(0, 0, 0), font=font)
    return canvas


def write_overlay(path: str | Path, image: Image.Image, cam: np.ndarray, cfg: dict[str, Any],
                  label: str = "") -> Path:
    """Write the overlay PNG atomically; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        overlay(image, cam, cfg, label=label).save(tmp, format="PNG")
    return path


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees), saturation and value (0-1) of an H x W x 3 uint8 array."""
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), dtype=np.float32)
    return hsv[..., 0] * (360.0 / 256.0), hsv[..., 1] / 255.0, hsv[..., 2] / 255.0


def sticker_like(rgb: np.ndarray) -> np.ndarray:
    """Pixels of saturated colour that neither skin nor pigment has (green, cyan, blue, violet):
    the stickers, ink dots and coloured ruler marks of dermoscopy photographs."""
    hue, sat, val = _hsv(rgb)
    return (sat > 0.45) & (val > 0.3) & (hue > 65) & (hue < 290)


def _border_band(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """The outer BORDER_SHARE of the model's view (where rulers and vignette corners lie), as a mask."""
    left, top, right, bottom = box
    band = round(BORDER_SHARE * min(right - left, bottom - top))
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    inner = (xx >= left + band) & (xx < right - band) & (yy >= top + band) & (yy < bottom - band)
    return ~inner


def artefact_warnings(image: Image.Image, cam: np.ndarray, cfg: dict[str, Any]) -> list[str]:
    """Warnings when the map's hot region (normalised value >= HOT_LEVEL) sits on an artefact."""
    if float(np.ptp(np.asarray(cam, dtype=np.float32))) < 1e-12:
        return []
    scale = min(1.0, 256 / min(image.size))
    heat, box = heat_on_image(image, cam, cfg, scale)
    hot = np.nan_to_num(heat, nan=-1.0) >= HOT_LEVEL
    if not hot.any():
        return []
    small = image.convert("RGB").resize((heat.shape[1], heat.shape[0]), Image.Resampling.BILINEAR)
    warnings = []
    if float(sticker_like(np.asarray(small))[hot].mean()) >= ARTEFACT_SHARE:
        warnings.append("heat-map peak on a saturated colour patch (sticker or ink?): the evidence may not be the lesion")
    if float(_border_band(box, heat.shape)[hot].mean()) >= BORDER_HOT_SHARE:
        warnings.append("heat-map peak at the image border (ruler or vignette?): the evidence may not be the lesion")
    return warnings


def cam_report(image: Image.Image, cam: np.ndarray, cfg: dict[str, Any], shown: str) -> dict[str, Any]:
    """The raw map for the JSON result: values (grid rows), the crop it covers, its peak, warnings."""
    cam = np.asarray(cam, dtype=np.float32)
    row, col = np.unravel_index(int(np.argmax(cam)), cam.shape)
    box = crop_box(image.width, image.height, cfg)
    cell_w, cell_h = (box[2] - box[0]) / cam.shape[1], (box[3] - box[1]) / cam.shape[0]
    return {
        "class": shown,
        "grid": [int(cam.shape[0]), int(cam.shape[1])],
        "values": [[round(float(v), 5) for v in r] for r in cam],
        "crop_box": [round(v, 1) for v in box],
        "peak": {"row": int(row), "col": int(col), "value": round(float(cam[row, col]), 5),
                 "x": round(box[0] + (col + 0.5) * cell_w, 1), "y": round(box[1] + (row + 0.5) * cell_h, 1)},
        "warnings": artefact_warnings(image, cam, cfg),
    }
