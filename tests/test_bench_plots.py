"""accuracy_latency.png: x labels that never overlap, unstable rows drawn hollow and named so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import pytest

from dsedge.bench import plots

matplotlib.use("Agg")


def _row(backend: str, precision: str, ms: float, unstable: bool) -> dict[str, Any]:
    return {"backend": backend, "precision": precision, "batch_size": 1, "status": "ok",
            "latency": {"host": {"p50_ms": ms, "iqr_ms": ms * 0.1}}, "stability": {"unstable": unstable},
            "accuracy": {"mean_auc": 0.78 + ms / 1000, "mel_auc": 0.68}}


@pytest.fixture
def figures(monkeypatch) -> list[Any]:
    kept: list[Any] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig))
    return kept


@pytest.mark.parametrize("latencies", [[21.0, 27.0, 33.0, 48.0, 62.0, 85.0],  # less than a decade
                                       [0.9, 3.0, 40.0, 350.0, 2000.0]])      # several decades
def test_accuracy_latency_labels_do_not_overlap(figures: list[Any], latencies: list[float]) -> None:
    rows = [_row(f"b{i}", "fp32", ms, unstable=False) for i, ms in enumerate(latencies)]
    result = {"rows": rows, "data": {"split": "val"}}
    plots.write_plots(result, Path("unused"), "test")
    fig = figures[-1]  # accuracy_latency (latency.png is drawn first)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels(which="both")
                 if t.get_visible() and t.get_text()]
        assert len(boxes) >= 1
        boxes.sort(key=lambda b: b.x0)
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:], strict=False)), [t.get_text() for t in ax.get_xticklabels(which="both")]


def test_unstable_rows_are_hollow_and_named(figures: list[Any]) -> None:
    rows = [_row("onnxruntime", "fp32", 20.0, unstable=False), _row("openvino", "int8", 8.0, unstable=True)]
    plots.write_plots({"rows": rows, "data": {"split": "val"}}, Path("unused"), "test")
    ax = figures[-1].axes[0]
    labels = [c.get_label() for c in ax.collections]
    assert labels == ["onnxruntime fp32", "openvino int8 (unstable)"]
    stable, unstable = ax.collections
    assert stable.get_facecolor()[0][3] > 0 and unstable.get_facecolor().size == 0 or \
        unstable.get_facecolor()[0][3] == 0  # hollow: no face colour
