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


def test_reliability_diagram_shows_bin_counts_and_the_split(tmp_path: Path, monkeypatch) -> None:
    from dsedge.clinical import plots

    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig) or Path(path))
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 120)
    probs = rng.dirichlet([2, 1, 1], 120)
    bins = reliability_bins(probs, labels)
    plots.plot_reliability({"softmax": (bins, 0.1), "temperature 1.5": (bins, 0.05)}, tmp_path / "r.png",
                           split="val")
    fig = kept[0]
    title = fig.axes[0].get_title()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert title == "reliability diagram (val split)"
    assert sorted(texts) == sorted(str(b["count"]) for b in bins for _ in range(2))  # every point, both curves
    heights = sorted(round(p.get_height()) for p in fig.axes[1].patches)
    assert heights == sorted(b["count"] for b in bins for _ in range(2)) and sum(heights) == 240
    named = plots.plot_reliability({"softmax": (bins, 0.1)}, tmp_path / "n.png", title="calibration", split="val")
    assert named and "calibration (val split)" == kept[-1].axes[0].get_title()
