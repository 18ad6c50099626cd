"""Synthetic images that look enough like dermoscopy to pass every input-quality check, the
"not a dermoscopy image" check included: skin-coloured background with smooth shading, a darker
irregular lesion, fine texture and a little sensor noise. Tests that need images the runtime will
classify (not answer "cannot assess") use these instead of pixel noise, which the runtime rejects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def lesion_image(size: tuple[int, int] = (640, 480), seed: int = 0,
                 skin: tuple[int, int, int] = (205, 150, 130), lesion: float = 0.45) -> Image.Image:
    """Skin background, a dark irregular blob (`lesion` = its brightness factor) and texture."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = np.arctan2(yy - h / 2, xx - w / 2)
    wobble = 1 + 0.15 * np.sin(3 * angle + rng.uniform(0, 6)) + 0.08 * np.sin(7 * angle + rng.uniform(0, 6))
    r = np.hypot((xx - w / 2) / (w / 4), (yy - h / 2) / (h / 4)) / wobble
    shade = 1 - 0.12 * np.hypot((xx - w / 2) / w, (yy - h / 2) / h)
    base = np.stack([np.full((h, w), float(c)) for c in skin], -1) * shade[..., None]
    inside = np.clip(1.2 - r, 0, 1)[..., None] ** 0.5
    base = base * (1 - inside * (1 - lesion))
    texture = np.asarray(Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(3)), dtype=np.float32) - 127.0
    base += 0.6 * texture[..., None] + rng.normal(0, 3, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def save_lesions(folder: Path, sizes: list[tuple[int, int]], prefix: str = "img") -> list[Path]:
    """Write one lesion image per (width, height) as JPEG; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        p = folder / f"{prefix}{i}.jpg"
        lesion_image(size, seed=i, lesion=0.35 + 0.1 * i).save(p, quality=92)
        paths.append(p)
    return paths
