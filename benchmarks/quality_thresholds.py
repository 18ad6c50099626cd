"""Measure the input-quality checks (dsedge.runtime.quality) on real and synthetic bad images.

    nice python benchmarks/quality_thresholds.py --isic2017 ../shared/data/isic2017 \
        --fullres ../shared/data/isic-fullres --ham ../shared/data/ham10000/images [--limit 0]

Prints, per image set, percentiles of each measure and how many images each check with the
current thresholds flags. Real images should pass; black, white, uniform, tiny and blurred ones
should not. The chosen thresholds and these numbers are written in the quality module's docstring.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from dsedge.runtime.quality import QualityThresholds, assess, measure
from dsedge.utils.images import IMAGE_EXTENSIONS, load_rgb

MEASURES = ("brightness", "contrast", "sharpness", "aspect")


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


def synthetic_sets(samples: list[Image.Image], t: QualityThresholds) -> None:
    uniform = {
        "black": Image.new("RGB", (640, 480), (0, 0, 0)),
        "near-black": Image.new("RGB", (640, 480), (12, 10, 9)),
        "white": Image.new("RGB", (640, 480), (255, 255, 255)),
        "grey": Image.new("RGB", (640, 480), (128, 120, 110)),
        "tiny 20x10": samples[0].resize((20, 10)),
        "thin 1200x300": samples[0].resize((1200, 300)),
    }
    for name, img in uniform.items():
        r = assess(img, t)
        print(f"  synthetic {name:14s} flags {r.flags} {r.measures}")
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
