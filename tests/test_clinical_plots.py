"""Reliability diagram and ROC plot: PNGs written, classes without positives skipped, not crashing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsedge.clinical.calibration import reliability_bins
from dsedge.clinical.plots import plot_reliability, plot_roc


def test_plots_are_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(20, int), np.ones(30, int)]  # no SK at all: its curve is skipped
    probs = rng.dirichlet([1, 1, 1], 50)
    rel = plot_reliability({"softmax": (reliability_bins(probs, labels), 0.1)}, tmp_path / "r.png")
    roc = plot_roc(labels, probs, ["MEL", "NV", "SK"], tmp_path / "roc.png", point=("MEL", 0.9, 0.4))
    for p in (rel, roc):
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temp files left
