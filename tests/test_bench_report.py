"""Bench report: JSON, Markdown and PNG files, the terminal table, skipped reasons, environment block."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from dsedge.bench.latency import summarize
from dsedge.bench.report import environment, headline, markdown, print_table, write_report


def _row(backend: str, precision: str, bs: int, ms: float, speedup: float, acc: float | None) -> dict[str, Any]:
    lat = {"host": summarize([ms * 0.9, ms, ms * 1.2], bs).to_dict(), "warmup_s": 0.5}
    row = {"backend": backend, "precision": precision, "batch_size": bs, "status": "ok", "latency": lat,
           "speedup": speedup, "runner": {"backend": backend}}
    if acc is not None:
        row["accuracy"] = {"accuracy": acc, "balanced_accuracy": acc - 0.1, "mel_auc": 0.8, "sk_auc": 0.9,
                           "f1": {"MEL": 0.5, "NV": 0.9, "SK": 0.6},
                           "agreement": {"top1_agreement": 0.995, "max_abs_prob_diff": 0.01,
                                         "mean_abs_prob_diff": 0.001}}
    return row


def make_result(with_data: bool = True) -> dict[str, Any]:
    acc = 0.8 if with_data else None
    rows = [
        _row("torch", "fp32", 1, 60.0, 1.0, acc),
        _row("torch", "fp32", 8, 400.0, 1.0, acc),
        _row("onnxruntime", "fp32", 1, 30.0, 2.0, acc),
        _row("onnxruntime", "fp32", 8, 200.0, 2.0, acc),
        _row("openvino", "bf16", 1, 15.0, 4.0, acc),
        _row("openvino", "bf16", 8, 90.0, 4.44, acc),
        {"backend": "tensorrt", "precision": "int8", "batch_size": 1, "status": "skipped",
         "reason": "the Python package 'tensorrt' is not installed (pip install 'dsedge[tensorrt]')"},
        {"backend": "tensorrt", "precision": "int8", "batch_size": 8, "status": "skipped",
         "reason": "the Python package 'tensorrt' is not installed (pip install 'dsedge[tensorrt]')"},
    ]
    return {
        "format": "dsedge-bench", "created": "2026-11-28T00:00:00+00:00", "environment": environment(2),
        "source": {"description": "random-init DS-ResNet50 (seed 0), synthetic INT8", "notes": []},
        "settings": {"timing": "fixed 3 iterations"},
        "agreement_reference": "torch fp32" if with_data else None,
        "data": {"root": "/d", "split": "val", "n": 150, "class_counts": {"MEL": 30, "NV": 78, "SK": 42}}
        if with_data else None,
        "rows": rows,
        "fastest": {"1": {"label": "openvino bf16", "p50_ms": 15.0, "speedup": 4.0,
                          "top1_agreement": 0.995 if with_data else None},
                    "8": {"label": "openvino bf16", "p50_ms": 90.0, "speedup": 4.44, "top1_agreement": None}},
    }


def test_environment_block() -> None:
    env = environment(3)
    assert env["threads"] == 3 and env["cpu"] and env["cpu_count"] >= 1
    assert "torch" in env["versions"] and "onnxruntime" in env["versions"]
    assert isinstance(env["cpu_flags"], list)
    assert environment()["threads"].startswith("default")


def test_files_and_content(tmp_path: Path) -> None:
    result = make_result()
    files = write_report(result, tmp_path / "out")
    assert set(files) == {"bench.json", "bench.md", "latency.png", "accuracy_latency.png"}
    for p in files.values():
        assert p.stat().st_size > 0
    assert files["latency.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(files["bench.json"].read_text())
    assert saved["rows"][0]["latency"]["host"]["p50_ms"] == 60.0 and saved["files"]
    md = files["bench.md"].read_text()
    assert "| openvino | bf16 | 1 |" in md and "4.00x" in md
    assert "tensorrt int8 (batch 1, 8)" in md and "dsedge[tensorrt]" in md  # one line for both batches
    assert "MEL 30" in md and "agreement reference: torch fp32" in md
    assert "99.5%" in md and "1.0e-02" in md  # agreement and max |prob diff| columns


def test_without_data_no_accuracy_columns_or_plot(tmp_path: Path) -> None:
    files = write_report(make_result(with_data=False), tmp_path)
    assert "accuracy_latency.png" not in files
    md = files["bench.md"].read_text()
    assert "ACC" not in md and "speed-up" in md


def test_terminal_table_and_headline() -> None:
    console = Console(record=True, width=200)
    result = make_result()
    print_table(result, console)
    text = console.export_text()
    assert "openvino" in text and "skipped" in text and "dsedge[tensorrt]" in text  # brackets not eaten as markup
    lines = headline(result)
    assert lines[0].startswith("batch 1: fastest dsedge artifact is openvino bf16") and "4.00x" in lines[0]
    assert "99.5%" in lines[0]


def test_markdown_is_stable_text() -> None:
    md = markdown(make_result())
    assert md.startswith("# dsedge bench") and md.endswith("\n")


def test_headline_names_the_fastest_artifact_within_the_agreement_target() -> None:
    result = make_result()
    result["agreement_target"] = 0.995
    result["fastest_agreeing"] = {"1": {"label": "openvino fp32", "p50_ms": 24.0, "speedup": 2.5,
                                        "top1_agreement": 1.0}}
    lines = headline(result)
    assert any(line.startswith("batch 1: fastest at >= 99.5% top-1 agreement is openvino fp32") and "2.50x" in line
               for line in lines)


def test_fastest_agreeing_filters_rows_by_measured_agreement() -> None:
    from dsedge.bench.run import _fastest

    def row(backend: str, precision: str, p50: float, agree: float | None) -> dict:
        acc = {"agreement": {"top1_agreement": agree}} if agree is not None else None
        return {"status": "ok", "backend": backend, "precision": precision, "batch_size": 1, "speedup": 1.0,
                "latency": {"host": {"p50_ms": p50}}, "accuracy": acc}

    rows = [row("openvino", "bf16", 10.0, 0.97), row("openvino", "fp32", 20.0, 1.0), row("onnxruntime", "fp32", 15.0, None)]
    assert _fastest(rows)["1"]["label"] == "openvino bf16"
    assert _fastest(rows, 0.995)["1"]["label"] == "openvino fp32"
