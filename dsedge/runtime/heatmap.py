"""Class-activation-map overlays from the engine's own `cam` output (torch-free: NumPy + Pillow).

A bundle exported with `dsedge export --cam` has a second graph output `cam` (N x classes x h x w,
7 x 7 for 224 px): the last-stage features weighted by the classifier's weights, computed inside
the graph (Zhou et al. 2016), so TensorRT, ONNX Runtime and OpenVINO return it from the same call
as the logits. Here it is min-max normalised, upsampled to the model's view (the resized,
centre-cropped image the model actually saw) and blended over it with a blue-to-red colour map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dsedge.runtime.preprocess import _RESAMPLE, center_crop_box, resized_size
from dsedge.utils.io import atomic_path

CAM_OUTPUT = "cam"
# blue -> cyan -> green -> yellow -> red (a "jet"-like ramp without matplotlib on the device)
_RAMP = np.array([[0, 0, 143], [0, 128, 255], [0, 200, 80], [255, 220, 0], [220, 0, 0]], dtype=np.float32)


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


def model_view(image: Image.Image, cfg: dict[str, Any]) -> Image.Image:
    """The resized, centre-cropped RGB image the model saw (same geometry as preprocessing)."""
    w, h = resized_size(*image.size, int(cfg["resize"]))
    img = image.convert("RGB").resize((w, h), _RESAMPLE[cfg.get("interpolation", "bilinear")])
    return img.crop(center_crop_box(w, h, int(cfg["crop"])))


def overlay(image: Image.Image, cam: np.ndarray, cfg: dict[str, Any], alpha: float = 0.45) -> Image.Image:
    """Blend one class's normalised map over the model's view of `image`."""
    view = model_view(image, cfg)
    heat = Image.fromarray((normalise(cam) * 255).astype(np.uint8)).resize(view.size, Image.Resampling.BILINEAR)
    colour = colorize(np.asarray(heat, dtype=np.float32) / 255.0)
    blended = np.asarray(view, dtype=np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))


def write_overlay(path: str | Path, image: Image.Image, cam: np.ndarray, cfg: dict[str, Any]) -> Path:
    """Write the overlay PNG atomically; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        overlay(image, cam, cfg).save(tmp, format="PNG")
    return path
