"""Calibration images for INT8: a fixed, recorded, class-stratified list fed to ONNX Runtime in chunks.

Reproducibility is the point here (DESIGN §5): the same split, image count and
seed always select the same files in the same order, and the list's sha256 goes
into the manifest. Images pass through exactly the bundle's preprocessing
(`dsedge.runtime.preprocess`, the definition every runtime uses), never a
second copy of it.

ONNX Runtime 1.32's Entropy and Percentile calibrators keep every intermediate
output of every batch in RAM until `collect_data` returns, and MinMax with
`CalibMaxIntermediateOutputs` fails outright; feeding the calibrator one chunk of
images per `collect_data` call bounds memory and works for all three methods
(ranges and histograms merge across calls). `iter_chunks` does that. Torch-free.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from PIL import Image

from dsedge.data.samples import DatasetSplit, Sample
from dsedge.errors import CalibrationError, DataError
from dsedge.runtime.preprocess import preprocess_files, preprocess_image

#: Fewer images than this cannot give meaningful activation ranges.
MIN_CALIBRATION_IMAGES = 8
#: Images per `collect_data` call (bounds the calibrator's RAM: all activations of a chunk are held).
DEFAULT_CHUNK_IMAGES = 16
#: Images per ONNX Runtime run inside a chunk.
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class CalibrationSet:
    """The ordered calibration images: real files (with labels) or seeded synthetic images."""

    ids: tuple[str, ...]
    paths: tuple[Path, ...] = ()
    labels: tuple[int, ...] = ()
    synthetic: bool = False
    seed: int = 0
    source: str = ""
    class_counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def sha256(self) -> str:
        """Hash of the ordered image list (name, label, size): identifies the calibration data."""
        h = hashlib.sha256()
        if self.synthetic:
            h.update(f"synthetic\t{self.seed}\t{len(self.ids)}\n".encode())
            return h.hexdigest()
        for ident, path, label in zip(self.ids, self.paths, self.labels, strict=True):
            size = path.stat().st_size if path.exists() else -1
            h.update(f"{ident}\t{label}\t{size}\n".encode())
        return h.hexdigest()

    def load(self, start: int, end: int, preprocessing: dict[str, Any]) -> np.ndarray:
        """Images [start, end) as a preprocessed N x 3 x H x W float32 batch."""
        if self.synthetic:
            return np.stack([_synthetic_image(self.seed, i, preprocessing) for i in range(start, end)])
        return preprocess_files(self.paths[start:end], preprocessing)


def _synthetic_image(seed: int, index: int, preprocessing: dict[str, Any]) -> np.ndarray:
    """A seeded random RGB image pushed through the real preprocessing (same value range as photos)."""
    rng = np.random.default_rng([seed, index])
    size = int(preprocessing["resize"])
    arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return preprocess_image(Image.fromarray(arr, "RGB"), preprocessing)


def _stratified_counts(counts: list[int], total: int) -> list[int]:
    """Split `total` over classes in proportion to `counts` (largest remainder), at least one each."""
    n = sum(counts)
    exact = [total * c / n for c in counts]
    take = [max(1, int(np.floor(e))) for e in exact]
    take = [min(t, c) for t, c in zip(take, counts, strict=True)]
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - np.floor(exact[i])), i))
    while sum(take) < total:
        grew = False
        for i in order:
            if sum(take) >= total:
                break
            if take[i] < counts[i]:
                take[i] += 1
                grew = True
        if not grew:
            break
    while sum(take) > total:  # the at-least-one rule overshot: trim the biggest classes
        i = max(range(len(take)), key=lambda j: (take[j], -j))
        take[i] -= 1
    return take


def select_images(split: DatasetSplit, num_images: int, seed: int = 0) -> CalibrationSet:
    """Pick `num_images` files from `split`, stratified by class, in a seeded fixed order.

    Raises `CalibrationError` when the split is too small and `DataError` when a
    class has no images (calibrating on a split without melanomas would tune the
    ranges to the wrong data).
    """
    if num_images < MIN_CALIBRATION_IMAGES:
        raise CalibrationError(
            f"too few calibration images: {num_images} (at least {MIN_CALIBRATION_IMAGES} are needed)",
            "use --num-images 512 (the default) or at least a few hundred for a real model",
        )
    if len(split) == 0:
        raise DataError(f"split '{split.name}' of {split.root} has no images")
    counts = split.class_counts()
    missing = [c for c, n in counts.items() if n == 0]
    if missing:
        raise DataError(
            f"split '{split.name}' of {split.root} has no images of class {', '.join(missing)} "
            f"(counts: {counts})",
            "calibration is stratified by class: every class of the model needs images",
        )
    if len(split) < num_images:
        raise CalibrationError(
            f"too few calibration images: asked for {num_images}, split '{split.name}' has {len(split)}",
            f"pass --num-images {len(split)} or a larger split",
        )
    by_class: list[list[Sample]] = [
        sorted((s for s in split.samples if s.label == i), key=lambda s: s.path.name)
        for i in range(len(split.classes))
    ]
    take = _stratified_counts([len(b) for b in by_class], num_images)
    rng = np.random.default_rng(seed)
    chosen: list[Sample] = []
    for samples, k in zip(by_class, take, strict=True):
        idx = rng.choice(len(samples), size=k, replace=False)
        chosen.extend(samples[i] for i in sorted(idx))
    order = rng.permutation(len(chosen))
    chosen = [chosen[i] for i in order]
    return CalibrationSet(
        ids=tuple(s.path.name for s in chosen),
        paths=tuple(s.path for s in chosen),
        labels=tuple(s.label for s in chosen),
        synthetic=False,
        seed=seed,
        source=f"{split.root}:{split.name}",
        class_counts={c: int(k) for c, k in zip(split.classes, take, strict=True)},
    )


def synthetic_set(num_images: int, seed: int = 0) -> CalibrationSet:
    """Seeded random images: only for smoke tests and latency work, never for a model that ships."""
    if num_images < 1:
        raise CalibrationError(f"num_images must be >= 1, got {num_images}")
    return CalibrationSet(
        ids=tuple(f"synthetic-{i:05d}" for i in range(num_images)), synthetic=True, seed=seed, source="synthetic"
    )


class BatchReader(CalibrationDataReader):
    """ONNX Runtime data reader over images [start, end) of a `CalibrationSet`, `batch` at a time."""

    def __init__(
        self,
        cset: CalibrationSet,
        preprocessing: dict[str, Any],
        input_name: str,
        start: int = 0,
        end: int | None = None,
        batch: int = DEFAULT_BATCH,
        on_images: Callable[[int], None] | None = None,
    ) -> None:
        self.cset = cset
        self.preprocessing = preprocessing
        self.input_name = input_name
        self.start = start
        self.end = len(cset) if end is None else min(end, len(cset))
        self.batch = max(1, int(batch))
        self.on_images = on_images
        self._pos = start

    def __len__(self) -> int:
        return -(-(self.end - self.start) // self.batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self.end:
            return None
        stop = min(self._pos + self.batch, self.end)
        x = self.cset.load(self._pos, stop, self.preprocessing)
        if self.on_images:
            self.on_images(stop - self._pos)
        self._pos = stop
        return {self.input_name: x}

    def rewind(self) -> None:
        self._pos = self.start


def iter_chunks(
    cset: CalibrationSet,
    preprocessing: dict[str, Any],
    input_name: str,
    chunk_images: int = DEFAULT_CHUNK_IMAGES,
    batch: int = DEFAULT_BATCH,
    on_images: Callable[[int], None] | None = None,
) -> Iterator[BatchReader]:
    """One `BatchReader` per chunk of about `chunk_images`, in the set's fixed order.

    ORT's histogram collector stacks the batches of one `collect_data` call, so
    every batch inside a chunk must have the same size: chunks are whole
    multiples of `batch`, and a final partial batch becomes a chunk of its own.
    """
    batch = max(1, int(batch))
    per_chunk = max(batch, (max(1, int(chunk_images)) // batch) * batch)
    n = len(cset)
    start = 0
    while start < n:
        end = min(start + per_chunk, n)
        full = start + ((end - start) // batch) * batch
        if full > start:
            yield BatchReader(cset, preprocessing, input_name, start, full, batch, on_images)
        if full < end:
            yield BatchReader(cset, preprocessing, input_name, full, end, batch, on_images)
        start = end
