"""Offline balancing writer and weighted sampler."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dsedge.data import load_split
from dsedge.data.balance import balanced_size, class_frequencies, weighted_sampler, write_balanced
from dsedge.utils.io import sha256_file


def test_write_balanced_reaches_target_and_is_reproducible(tiny_isic: Path, tmp_path: Path) -> None:
    train = load_split(tiny_isic, "train")  # MEL 6, NV 8, SK 5
    a = write_balanced(train, tmp_path / "a", seed=7)
    b = write_balanced(train, tmp_path / "b", seed=7)
    assert a.class_counts() == {"MEL": 8, "NV": 8, "SK": 8}
    assert len(a) == balanced_size(train) == 24
    reloaded = load_split(tmp_path / "a", "all")
    assert reloaded.class_counts() == a.class_counts()
    hashes_a = sorted(sha256_file(s.path) for s in a.samples)
    hashes_b = sorted(sha256_file(s.path) for s in b.samples)
    assert hashes_a == hashes_b
    augmented = [s for s in a.samples if "_aug" in s.path.name]
    assert len(augmented) == 2 + 3


def test_weighted_sampler_draws_classes_evenly() -> None:
    labels = [0] * 10 + [1] * 80 + [2] * 10
    sampler = weighted_sampler(labels, 3, seed=0)
    counts = Counter(labels[i] for i in list(sampler) * 20)
    total = sum(counts.values())
    assert all(0.25 < counts[c] / total < 0.42 for c in range(3))
    assert class_frequencies(labels, 3) == [0.1, 0.8, 0.1]
