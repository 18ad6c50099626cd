"""Class balancing: the paper's offline augmented copies, or a weighted sampler.

The paper balanced ISIC 2017 (MEL 374 / NV 1372 / SK 254) offline: minority
classes get rotated, flipped and rescaled copies until each class reaches a
target. `write_balanced` does that reproducibly (seeded) into a folder tree;
`weighted_sampler` is the cheaper online alternative.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from dsedge.data.samples import DatasetSplit, Sample
from dsedge.utils.images import load_rgb
from dsedge.utils.io import atomic_path

_GEOMETRIC = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
)


def augment_copy(img: Image.Image, rng: random.Random, scale: tuple[float, float] = (0.8, 1.2)) -> Image.Image:
    """One offline copy: a rotation or flip, then a random rescale back to the original size."""
    out = img.transpose(rng.choice(_GEOMETRIC))
    s = rng.uniform(*scale)
    w, h = out.size
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    scaled = out.resize((sw, sh), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (w, h))
    canvas.paste(scaled, ((w - sw) // 2, (h - sh) // 2))  # crops when s > 1, pads when s < 1
    return canvas


def write_balanced(
    split: DatasetSplit,
    out_dir: str | Path,
    target: int | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> DatasetSplit:
    """Copy the split into OUT/<CLASS>/ and add augmented copies until each class has `target` images.

    `target` defaults to the largest class's count. Returns the balanced split
    (a folder-per-class dataset). Same inputs and seed give the same files.
    """
    out = Path(out_dir)
    rng = random.Random(seed)
    counts = Counter(split.labels)
    target = target or max(counts.values())
    by_class: dict[int, list[Sample]] = {i: [] for i in range(len(split.classes))}
    for s in split.samples:
        by_class[s.label].append(s)
    new_samples: list[Sample] = []
    for idx, name in enumerate(split.classes):
        cls_dir = out / name
        cls_dir.mkdir(parents=True, exist_ok=True)
        originals = sorted(by_class[idx], key=lambda s: s.path.name)
        for s in originals:
            dst = cls_dir / s.path.name
            if not dst.exists():
                shutil.copyfile(s.path, dst)
            new_samples.append(Sample(dst, idx))
            if progress:
                progress(1)
        for k in range(max(0, target - len(originals))):
            src = originals[k % len(originals)] if originals else None
            if src is None:
                break
            dst = cls_dir / f"{src.path.stem}_aug{k:05d}.jpg"
            img = augment_copy(load_rgb(src.path), rng)
            with atomic_path(dst) as tmp:
                img.save(tmp, format="JPEG", quality=95)
            new_samples.append(Sample(dst, idx))
            if progress:
                progress(1)
    return DatasetSplit(split.name, list(split.classes), new_samples, "folders", out)


def balanced_size(split: DatasetSplit, target: int | None = None) -> int:
    counts = Counter(split.labels)
    target = target or max(counts.values())
    return sum(max(target, c) for c in counts.values())


def class_frequencies(labels: list[int], num_classes: int) -> list[float]:
    c = Counter(labels)
    n = max(1, len(labels))
    return [c.get(i, 0) / n for i in range(num_classes)]


def weighted_sampler(labels: list[int], num_classes: int, seed: int = 0):
    """A `WeightedRandomSampler` drawing each class equally often (1 / class count per sample)."""
    import torch
    from torch.utils.data import WeightedRandomSampler

    c = Counter(labels)
    weights = torch.tensor([1.0 / c[label] for label in labels], dtype=torch.double)
    gen = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=gen)
