"""Calibration image selection and the chunked ONNX Runtime data reader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_isic_tree

from dsedge.calibration import reader as rd
from dsedge.config import PreprocessConfig
from dsedge.data import load_split
from dsedge.errors import CalibrationError, DataError
from dsedge.runtime.preprocess import preprocess_files

PRE = PreprocessConfig.for_size(32).to_dict()


def test_selection_is_stratified_seeded_and_fixed(tiny_isic: Path) -> None:
    split = load_split(tiny_isic, "train")  # MEL 6, NV 8, SK 5
    a = rd.select_images(split, 10, seed=3)
    b = rd.select_images(split, 10, seed=3)
    c = rd.select_images(split, 10, seed=4)
    assert a.ids == b.ids and a.sha256() == b.sha256()
    assert a.ids != c.ids and a.sha256() != c.sha256()
    assert len(set(a.ids)) == 10
    assert a.class_counts == {"MEL": 3, "NV": 4, "SK": 3}
    assert [a.labels.count(i) for i in range(3)] == [3, 4, 3]
    # every chosen file really belongs to the split with that label
    truth = {s.path.name: s.label for s in split.samples}
    assert all(truth[i] == lab for i, lab in zip(a.ids, a.labels, strict=True))


def test_stratified_counts_keep_every_class() -> None:
    assert rd._stratified_counts([374, 1372, 254], 512) == [96, 351, 65]
    assert sum(rd._stratified_counts([1, 100, 1], 8)) == 8
    assert min(rd._stratified_counts([1, 100, 1], 8)) == 1


def test_hash_changes_when_a_file_changes(tiny_isic: Path) -> None:
    split = load_split(tiny_isic, "train")
    cset = rd.select_images(split, 8, seed=0)
    before = cset.sha256()
    with open(cset.paths[0], "ab") as f:
        f.write(b"\0")
    assert cset.sha256() != before


def test_reader_feeds_exact_runtime_preprocessing_in_equal_batches(tiny_isic: Path) -> None:
    cset = rd.select_images(load_split(tiny_isic, "train"), 11, seed=0)
    seen: list[int] = []
    chunks = list(rd.iter_chunks(cset, PRE, "input", chunk_images=8, batch=4, on_images=seen.append))
    batches = []
    for chunk in chunks:
        sizes = set()
        while (item := chunk.get_next()) is not None:
            sizes.add(len(item["input"]))
            batches.append(item["input"])
        assert len(sizes) == 1, "ORT stacks the batches of one collect_data call: sizes must match"
    x = np.concatenate(batches)
    assert x.shape == (11, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(x, preprocess_files(cset.paths, PRE))
    assert sum(seen) == 11


def test_synthetic_set_is_seeded() -> None:
    a = rd.synthetic_set(4, seed=1)
    x1, x2 = a.load(0, 4, PRE), rd.synthetic_set(4, seed=1).load(0, 4, PRE)
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, rd.synthetic_set(4, seed=2).load(0, 4, PRE))
    assert x1.shape == (4, 3, 32, 32) and a.synthetic


def test_too_few_images(tiny_isic: Path) -> None:
    split = load_split(tiny_isic, "train")
    with pytest.raises(CalibrationError, match="too few calibration images: asked for 50"):
        rd.select_images(split, 50)
    with pytest.raises(CalibrationError, match="too few"):
        rd.select_images(split, 2)


def test_split_missing_a_class(tmp_path: Path) -> None:
    root = make_isic_tree(tmp_path / "isic", {"train": (5, 6, 0), "val": (1, 1, 1)})
    with pytest.raises(DataError, match="no images of class SK"):
        rd.select_images(load_split(root, "train"), 8)


def test_unreadable_image_is_a_clear_error(tiny_isic: Path) -> None:
    cset = rd.select_images(load_split(tiny_isic, "train"), 8, seed=0)
    cset.paths[0].write_bytes(b"not a jpeg")
    reader = rd.BatchReader(cset, PRE, "input", batch=8)
    with pytest.raises(DataError):
        reader.get_next()


def test_empty_split(tmp_path: Path, tiny_isic: Path) -> None:
    for img in (tiny_isic / "ISIC-2017_Training_Data").iterdir():
        img.unlink()
    with pytest.raises(DataError):
        rd.select_images(load_split(tiny_isic, "train"), 8)
    shutil.rmtree(tiny_isic)
