"""Measure the input-quality checks (dsedge.runtime.quality) on real and synthetic bad images.

    nice python benchmarks/quality_thresholds.py --isic2017 ../shared/data/isic2017 \
        --fullres ../shared/data/isic-fullres --ham ../shared/data/ham10000/images [--limit 0]

Prints, per image set, percentiles of each measure and how many images each check with the
current thresholds flags. Real images should pass; black, white, uniform, tiny and blurred ones
should not, and neither should the non-dermoscopy images of `non_dermoscopy_images()` (noise,
stripes, checkerboards, flat colours, a synthetic landscape), which must get "not_dermoscopy".
The chosen thresholds and these numbers are written in the quality module's docstring.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from dsedge.runtime.quality import QualityThresholds, assess, measure
from dsedge.utils.images import IMAGE_EXTENSIONS, load_rgb

MEASURES = ("brightness", "contrast", "sharpness", "aspect", "autocorrelation", "periodicity", "saturation",
            "foreign_colour", "flat_share")


def image_files(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    files = [p for p in files if "superpixels" not in p.name]
    return files[:limit] if limit else files


def summarise(name: str, rows: list[dict[str, float]], flags: list[list[str]]) -> None:
    print(f"\n## {name}: {len(rows)} images")
    for key in MEASURES:
        v = np.array([r[key] for r in rows])
        q = np.percentile(v, [0, 0.5, 1, 5, 50, 95, 99, 100])
        print(f"  {key:11s} min {q[0]:9.2f}  p0.5 {q[1]:9.2f}  p1 {q[2]:9.2f}  p5 {q[3]:9.2f}  "
              f"p50 {q[4]:9.2f}  p95 {q[5]:9.2f}  p99 {q[6]:9.2f}  max {q[7]:9.2f}")
    failed = [f for f in flags if f]
    counts: dict[str, int] = {}
    for f in failed:
        for flag in f:
            counts[flag] = counts.get(flag, 0) + 1
    print(f"  flagged by current thresholds: {len(failed)} / {len(rows)} {counts}")


def real_set(name: str, files: list[Path], t: QualityThresholds) -> list[Image.Image]:
    rows, flags, keep = [], [], []
    for i, p in enumerate(files):
        img = load_rgb(p)
        rows.append(measure(img))
        report = assess(img, t)
        flags.append(report.flags)
        if report.flags:
            print(f"  {name}: {p.name} flagged {report.flags} {report.measures}")
        if i % 50 == 0 and len(keep) < 40:
            keep.append(img)
    summarise(name, rows, flags)
    return keep


def _stripes(size: tuple[int, int], period: int, colours: tuple, angle: float = 0.0) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    on = (np.floor(phase * 2) % 2).astype(bool)
    return Image.fromarray(np.where(on[..., None], colours[0], colours[1]).astype(np.uint8))


def _checkerboard(size: tuple[int, int], cell: int, colours: tuple) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    on = ((xx // cell + yy // cell) % 2).astype(bool)
    return Image.fromarray(np.where(on[..., None], colours[0], colours[1]).astype(np.uint8))


def _landscape(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A photo-like outdoor scene: sky gradient, sun, hills of textured grass."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (yy / h)[..., None]
    sky = np.array([70, 130, 220]) * (1 - t) + np.array([190, 215, 245]) * t
    horizon = h * (0.55 + 0.08 * np.sin(xx / w * 2 * np.pi * 1.5))
    grass = np.array([60, 140, 50]) * (1 - 0.4 * (yy - horizon) / h)[..., None]
    img = np.where((yy > horizon)[..., None], grass, sky)
    sun = np.hypot(xx - 0.75 * w, yy - 0.2 * h) < 0.06 * w
    img[sun] = (255, 230, 120)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))


def _flat_blocks(size: tuple[int, int], colours: list[tuple[int, int, int]]) -> Image.Image:
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    for i, c in enumerate(colours):
        arr[:, i * w // len(colours):(i + 1) * w // len(colours)] = c
    return Image.fromarray(arr)


def _cartoon_lesion(size: tuple[int, int]) -> Image.Image:
    """A flat skin-coloured frame with a flat brown disc: lesion colours, but drawn, not photographed."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    disc = np.hypot(xx - w / 2, yy - h / 2) < min(w, h) / 4
    return Image.fromarray(np.where(disc[..., None], (110, 70, 50), (215, 170, 145)).astype(np.uint8))


def non_dermoscopy_images(seed: int = 0) -> dict[str, Image.Image]:
    """Synthetic images that are not dermoscopy: each must be flagged "not_dermoscopy"."""
    rng = np.random.default_rng(seed)
    size = (640, 480)
    return {
        "uniform noise": Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)),
        "small uniform noise": Image.fromarray(rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)),
        "skin-tinted noise": Image.fromarray(
            np.clip(rng.normal((180, 130, 110), 25, (480, 640, 3)), 0, 255).astype(np.uint8)),
        "black/white stripes": _stripes(size, 16, ((0, 0, 0), (255, 255, 255))),
        "skin-tone stripes": _stripes(size, 40, ((120, 70, 50), (220, 170, 150))),
        "diagonal stripes": _stripes(size, 24, ((90, 40, 40), (230, 200, 190)), angle=0.6),
        "checkerboard": _checkerboard(size, 32, ((0, 0, 0), (255, 255, 255))),
        "skin-tone checkerboard": _checkerboard(size, 20, ((150, 90, 70), (225, 180, 160))),
        "flat colour blocks": _flat_blocks(size, [(200, 30, 30), (30, 160, 40), (40, 60, 200), (240, 220, 40)]),
        "flat skin blocks": _flat_blocks(size, [(215, 170, 145), (150, 100, 80), (100, 60, 45)]),
        "cartoon lesion": _cartoon_lesion(size),
        "landscape": _landscape(size, rng),
        "grey landscape": _landscape(size, rng).convert("L").convert("RGB"),
    }


def synthetic_sets(samples: list[Image.Image], t: QualityThresholds) -> None:
    uniform = {
        "black": Image.new("RGB", (640, 480), (0, 0, 0)),
        "near-black": Image.new("RGB", (640, 480), (12, 10, 9)),
        "white": Image.new("RGB", (640, 480), (255, 255, 255)),
        "grey": Image.new("RGB", (640, 480), (128, 120, 110)),
        "tiny 20x10": samples[0].resize((20, 10)),
        "thin 1200x300": samples[0].resize((1200, 300)),
    }
    for name, img in {**uniform, **non_dermoscopy_images()}.items():
        r = assess(img, t)
        print(f"  synthetic {name:22s} flags {r.flags} {r.notes} {r.measures}")
    for radius in (1, 2, 3, 4, 6, 8):
        rows, flags = [], []
        for img in samples:
            small = img.resize((256, round(256 * img.height / img.width)))
            blurred = small.filter(ImageFilter.GaussianBlur(radius))
            rows.append(measure(blurred))
            flags.append(assess(blurred, t).flags)
        summarise(f"real images blurred, Gaussian radius {radius} px at 256 px", rows, flags)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isic2017", type=Path)
    ap.add_argument("--fullres", type=Path)
    ap.add_argument("--ham", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="images per set (0: all)")
    args = ap.parse_args(argv)
    t = QualityThresholds()
    print(f"thresholds: {t.to_dict()}")
    samples: list[Image.Image] = []
    if args.isic2017:
        for split in ("Training", "Validation"):
            folder = args.isic2017 / f"ISIC-2017_{split}_Data"
            if folder.is_dir():
                samples += real_set(f"ISIC 2017 {split}", image_files(folder, args.limit), t)
    if args.fullres:
        samples += real_set("ISIC full resolution", image_files(args.fullres, args.limit), t)
    if args.ham:
        samples += real_set("HAM10000", image_files(args.ham, args.limit), t)
    if samples:
        synthetic_sets(samples, t)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
