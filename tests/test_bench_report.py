"""Bench report: JSON, Markdown (a real GFM table), plots, a 120-column terminal table, warnings, honest headline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from rich.console import Console

from dsedge.bench.latency import summarize
from dsedge.bench.report import environment, headline, markdown, print_table, warnings, write_report
from dsedge.bench.rows import fastest

STABLE = {"unstable": False, "reasons": [], "spread": 0.05, "cv": 0.04}


def _row(backend: str, precision: str, bs: int, ms: float, speedup: float, acc: float | None,
         deployable: bool = True, unstable: bool = False) -> dict[str, Any]:
    lat = {"host": summarize([ms * 0.95, ms, ms * 1.05, ms], bs).to_dict(), "warmup_s": 0.5, "iters_per_round": 3}
    row = {"backend": backend, "precision": precision, "batch_size": bs, "status": "ok", "latency": lat,
           "speedup": speedup, "speedup_ci95": [speedup * 0.97, speedup * 1.03], "runner": {"backend": backend},
           "deployable": deployable,
           "stability": {**STABLE, "unstable": unstable, "reasons": ["spread IQR/p50 40% > 15%"] if unstable else []}}
    if acc is not None:
        row["accuracy"] = {"accuracy": acc, "balanced_accuracy": acc - 0.1, "mel_auc": 0.8, "sk_auc": 0.9,
                           "mean_auc": 0.85, "f1": {"MEL": 0.5, "NV": 0.9, "SK": 0.6},
                           "agreement": {"top1_agreement": 0.995, "max_abs_prob_diff": 0.01,
                                         "mean_abs_prob_diff": 0.001}}
    return row


def make_result(with_data: bool = True, busy: bool = False) -> dict[str, Any]:
    acc = 0.8 if with_data else None
    rows = [
        _row("torch", "fp32", 1, 60.0, 1.0, acc, deployable=False),
        _row("torch", "fp32", 8, 400.0, 1.0, acc, deployable=False),
        _row("torch-compile", "bf16", 1, 10.0, 6.0, acc, deployable=False),  # fastest, but not deployable
        _row("onnxruntime", "int8", 1, 12.0, 5.0, acc, unstable=True),  # faster than the pick, but unstable
        _row("onnxruntime", "fp32", 1, 30.0, 2.0, acc),
        _row("onnxruntime", "fp32", 8, 200.0, 2.0, acc),
        _row("openvino", "bf16", 1, 15.0, 4.0, acc),
        _row("openvino", "bf16", 8, 90.0, 4.44, acc),
        {"backend": "tensorrt", "precision": "int8", "batch_size": 1, "status": "skipped",
         "reason": "the Python package 'tensorrt' is not installed (pip install 'dsedge[tensorrt]')"},
        {"backend": "tensorrt", "precision": "int8", "batch_size": 8, "status": "skipped",
         "reason": "the Python package 'tensorrt' is not installed (pip install 'dsedge[tensorrt]')"},
    ]
    machine = {"busy": busy, "reasons": ["other processes used 80% of the 2 CPUs during the timed rounds"] if busy
               else [], "before": {"other_cpu": 0.01}, "during": {"other_cpu": 0.02, "steal": 0.0, "loadavg_max": 2.1}}
    result = {
        "format": "dsedge-bench", "created": "2026-11-28T00:00:00+00:00", "environment": environment(2),
        "source": {"description": "random-init DS-ResNet50 (seed 0), synthetic INT8", "notes": [],
                   "model": "ds_resnet50"},
        "settings": {"timing": "15 interleaved rounds", "image_size": 224},
        "stability": machine, "reference": "torch fp32",
        "agreement_reference": "torch fp32" if with_data else None,
        "data": {"root": "/d", "split": "val", "n": 150, "class_counts": {"MEL": 30, "NV": 78, "SK": 42}}
        if with_data else None,
        "rows": rows, "agreement_target": 0.995,
    }
    result["fastest"] = fastest(rows)
    result["fastest_agreeing"] = fastest(rows, 0.995)
    return result


def _gfm_table(md: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the first table, as a GFM renderer (markdown-it with GFM tables) parses them."""
    tokens = MarkdownIt("commonmark").enable("table").parse(md)  # GFM tables
    assert any(t.type == "table_open" for t in tokens), "bench.md has no table a GFM renderer recognises"
    rows: list[list[str]] = []
    in_row = False
    for t in tokens:
        if t.type == "tr_open":
            rows.append([])
            in_row = True
        elif t.type == "tr_close":
            in_row = False
        elif in_row and t.type == "inline":
            rows[-1].append(t.content)
    return rows[0], rows[1:]


def test_environment_block() -> None:
    env = environment(3)
    assert env["threads"] == 3 and env["cpu"] and env["cpu_count"] >= 1
    assert "torch" in env["versions"] and "onnxruntime" in env["versions"]
    assert isinstance(env["cpu_flags"], list)
    assert environment()["threads"].startswith("default")


def test_markdown_renders_as_one_table_with_every_column() -> None:
    md = markdown(make_result())
    head, body = _gfm_table(md)
    assert "max abs dp" in head and "mean AUC" in head and "build s" in head and "95% CI" in head and "IQR/p50" in head
    assert len(body) == 8 and all(len(r) == len(head) for r in body)  # a stray | would change the count
    first = dict(zip(head, body[0], strict=True))
    assert first["backend"] == "torch" and first["speed-up"] == "1.00x" and first["max abs dp"] == "1.0e-02"
    assert md.startswith("# dsedge bench") and md.endswith("\n")


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
    assert "ds_resnet50 224x224, 2 threads" in md  # what the plots are titled with


def test_without_data_no_accuracy_columns_or_plot(tmp_path: Path) -> None:
    files = write_report(make_result(with_data=False), tmp_path)
    assert "accuracy_latency.png" not in files
    head, _ = _gfm_table(files["bench.md"].read_text())
    assert "ACC" not in head and "speed-up" in head


def test_terminal_table_fits_120_columns_and_keeps_its_numbers() -> None:
    console = Console(record=True, width=80)  # piped output is 80 wide: the table still gets 120
    print_table(make_result(), console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "…" not in text  # nothing truncated
    assert "4.00x [3.88-4.12]" in text and "openvino bf16" in text and "UNSTABLE" in text
    assert "dsedge[tensorrt]" in text  # brackets not eaten as markup
    assert "bench.md" in text


def test_headline_names_only_stable_deployable_rows() -> None:
    result = make_result()
    lines = headline(result)
    # torch-compile bf16 (6x) is not deployable by the runtime; onnxruntime int8 (5x) is unstable
    assert lines[0].startswith("batch 1: fastest deployable artifact is openvino bf16 at p50 15.00 ms, 4.00x faster than torch fp32")
    assert "95% CI 3.88-4.12" in lines[0] and "left out as unstable: onnxruntime int8" in lines[0]
    assert any(line.startswith("batch 1: fastest deployable artifact at >= 99.5% top-1 agreement is openvino bf16")
               for line in lines)
    assert warnings(result) == ["unstable: onnxruntime int8 batch 1: spread IQR/p50 40% > 15%"]
    assert lines[-1].startswith("ship openvino bf16: fastest deployable row within the budget at batch 1 "
                                "(p50 15.00 ms, 4.00x, 95% interval 3.88-4.12x incl. rerun variation)")


def test_busy_machine_warns_and_claims_nothing() -> None:
    result = make_result(busy=True)
    for r in result["rows"]:
        if r["status"] == "ok":
            r["stability"] = {**r["stability"], "unstable": True, "reasons": ["machine busy: x"]}
    result["fastest"] = fastest(result["rows"])
    result["fastest_agreeing"] = {}
    (warning,) = warnings(result)
    assert warning.startswith("machine busy: other processes used 80%") and "no speed-up is claimed" in warning
    lines = headline(result)
    assert all("no claim" in line for line in lines[:-1]) and len(lines) == 3
    assert lines[-1].startswith("ship: no recommendation at batch 1: every deployable row within the budget was unstable")
    md = markdown(result)
    assert "> **Warning:** machine busy" in md
