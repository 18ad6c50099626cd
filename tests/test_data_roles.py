"""Data roles: which split tunes, which reports, and halves that never share an image."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_clinical_fit import make_folder_split

from dsedge.data import load_split
from dsedge.data.roles import resolve_roles, split_record, stratified_halves
from dsedge.errors import DataError

MANIFEST = {"classes": ["MEL", "NV", "SK"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_folder_split(tmp_path_factory.mktemp("roles") / "data", {"MEL": 11, "NV": 20, "SK": 9}, size=48)
    other = make_folder_split(tmp_path_factory.mktemp("roles_t") / "data", {"MEL": 4, "NV": 4, "SK": 4}, seed=3,
                              size=48)
    (other / "val").rename(root / "train")
    return root


def test_without_a_holdout_the_named_split_tunes_and_nothing_reports(data: Path) -> None:
    roles = resolve_roles(MANIFEST, data, "val")
    assert roles.source == "split" and roles.reporting is None and len(roles.tuning) == 40
    assert "cross-fitted" in roles.describe()
    with_report = resolve_roles(MANIFEST, data, "val", report_split="train")
    assert with_report.reporting is not None and len(with_report.reporting) == 12


def test_halves_are_disjoint_stratified_and_seeded(data: Path) -> None:
    ds = load_split(data, "val", classes=MANIFEST["classes"])
    a, b = stratified_halves(ds)
    assert {s.path for s in a.samples}.isdisjoint({s.path for s in b.samples})
    assert len(a) + len(b) == len(ds)
    for c in ("MEL", "NV", "SK"):
        assert abs(a.class_counts()[c] - b.class_counts()[c]) <= 1
    assert [s.path for s in stratified_halves(ds)[0].samples] == [s.path for s in a.samples]
    assert split_record(a, "tuning")["fingerprint"] != split_record(b, "reporting")["fingerprint"]


def test_empty_split_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "val" / "MEL").mkdir(parents=True)
    with pytest.raises(DataError):
        resolve_roles(MANIFEST, tmp_path, "val")


def test_a_slice_the_init_weights_saw_is_not_used_to_tune(data: Path) -> None:
    """--init-from a model trained on the slice: its numbers are in-sample, so the named split tunes."""
    record = {"kind": "holdout", "source_split": "train", "ids": ["x"], "class_counts": {"MEL": 1}}
    seen = {**MANIFEST, "training": {"tuning_split": record, "init_excludes_tuning": False}}
    roles = resolve_roles(seen, data, "val")
    assert roles.source == "split" and roles.reporting is None and len(roles.tuning) == 40
    assert "initialised from" in roles.note and roles.note in roles.describe()
    unseen = {**MANIFEST, "training": {"tuning_split": record, "init_excludes_tuning": True}}
    with pytest.raises(DataError):  # the recorded slice is used (and its one id is not in this data)
        resolve_roles(unseen, data, "val")
