"""The tuning slice held out of the training split: stratified, deterministic, reloadable, checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_isic_tree

from dsedge.data import load_split
from dsedge.data.splits import hold_out, tuning_split_from_record
from dsedge.errors import DsedgeError


@pytest.fixture
def isic40(tmp_path: Path) -> Path:
    return make_isic_tree(tmp_path / "isic", {"train": (10, 20, 1), "val": (2, 2, 2)}, size=16)


def test_hold_out_is_stratified_disjoint_and_json(isic40: Path):
    split = load_split(isic40, "train")
    train, tuning, record = hold_out(split, 0.2, seed=0)
    assert tuning.name == "tuning" and train.name == "train"
    assert tuning.class_counts() == {"MEL": 2, "NV": 4, "SK": 0}  # SK has one image: it stays in training
    assert train.class_counts() == {"MEL": 8, "NV": 16, "SK": 1}
    assert not {s.path for s in train.samples} & {s.path for s in tuning.samples}
    assert json.loads(json.dumps(record)) == record
    assert record["kind"] == "holdout" and record["source_split"] == "train" and record["fraction"] == 0.2
    assert record["seed"] == 0 and record["n"] == 6 and record["class_counts"] == tuning.class_counts()
    assert record["ids"] == sorted(s.path.stem for s in tuning.samples)
    assert record["fingerprint"] == tuning.fingerprint()


def test_hold_out_depends_on_seed_not_on_file_order(isic40: Path):
    split = load_split(isic40, "train")
    _, a, _ = hold_out(split, 0.2, seed=0)
    shuffled = type(split)(split.name, split.classes, split.samples[::-1], split.source, split.root)
    _, b, _ = hold_out(shuffled, 0.2, seed=0)
    _, c, _ = hold_out(split, 0.2, seed=1)
    assert {s.path for s in a.samples} == {s.path for s in b.samples}
    assert {s.path for s in a.samples} != {s.path for s in c.samples}


def test_record_reloads_exactly_the_slice(isic40: Path):
    _, tuning, record = hold_out(load_split(isic40, "train"), 0.2, seed=3)
    again = tuning_split_from_record(isic40, json.loads(json.dumps(record)))
    assert again.name == "tuning" and again.classes == tuning.classes
    assert sorted((s.path, s.label) for s in again.samples) == sorted((s.path, s.label) for s in tuning.samples)


def test_record_refuses_changed_or_missing_images(isic40: Path):
    _, tuning, record = hold_out(load_split(isic40, "train"), 0.2, seed=0)
    victim = tuning.samples[0].path
    victim.write_bytes(victim.read_bytes() + b"\0")  # same name, other file
    with pytest.raises(DsedgeError, match="fingerprint"):
        tuning_split_from_record(isic40, record)
    with pytest.raises(DsedgeError, match="ISIC_9999999 .*not in|not in .*ISIC_9999999"):
        tuning_split_from_record(isic40, {**record, "ids": [*record["ids"], "ISIC_9999999"]})
    with pytest.raises(DsedgeError, match="not a tuning-slice record"):
        tuning_split_from_record(isic40, {"kind": "kfold"})


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_hold_out_refuses_fractions_outside_0_1(isic40: Path, fraction: float):
    with pytest.raises(DsedgeError, match="tuning fraction"):
        hold_out(load_split(isic40, "train"), fraction, seed=0)


def test_hold_out_of_a_split_too_small_is_an_error(tmp_path: Path):
    tiny = make_isic_tree(tmp_path / "t", {"train": (1, 1, 1), "val": (1, 1, 1)}, size=16)
    with pytest.raises(DsedgeError, match="empty"):
        hold_out(load_split(tiny, "train"), 0.2, seed=0)
