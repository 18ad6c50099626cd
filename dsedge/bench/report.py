"""Bench outputs: the environment block, a rich table, bench.json, bench.md and PNG plots.

A latency number is meaningless without the machine that produced it, so every
report starts with the environment (CPU model and flags, threads, GPU, driver,
library versions) and says whether the weights were trained or random and
whether the data was real or synthetic. Skipped rows stay in the report with
their reason, so a missing backend is visible rather than silently absent.
Every row carries its spread and its speed-up interval; a busy machine or an
unstable row is a warning at the top, and the headline names only stable rows
of backends the torch-free runtime can deploy. The terminal table fits 120
columns; bench.md has every column.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dsedge.utils.io import atomic_write_json, atomic_write_text

_INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "fma",
                      "asimd", "sve", "bf16", "i8mm")
_PACKAGES = ("dsedge", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "cuda-python",
             "numpy")


def environment(threads: int | None = None) -> dict[str, Any]:
    """What produced the numbers: host, CPU, threads, GPU/driver, library versions (from `dsedge.machine`)."""
    from dsedge import machine

    host, flags = machine.system(), machine.cpu_flags()
    return {
        "host": host["host"],
        "os": host["os"],
        "python": host["python"],
        "cpu": machine.cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": [f for f in _INTERESTING_FLAGS if f in flags],
        "threads": threads or "default (all cores)",
        "gpu": machine.gpu_summary(),
        "versions": machine.package_versions(_PACKAGES),
    }


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}%"


def row_label(row: dict[str, Any]) -> str:
    return f"{row['backend']} {row['precision']}"


def speedup_text(row: dict[str, Any], ci: bool = True) -> str:
    """"3.21x [3.10-3.35]": the median per-round speed-up and its bootstrap 95 % interval."""
    s = row.get("speedup")
    if s is None:
        return "–"
    lo_hi = row.get("speedup_ci95")
    if not ci or not lo_hi:
        return f"{s:.2f}x"
    return f"{s:.2f}x [{lo_hi[0]:.2f}-{lo_hi[1]:.2f}]"


def _flag(row: dict[str, Any]) -> str:
    return "UNSTABLE" if row["stability"]["unstable"] else "stable"


def _ok(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in result["rows"] if r["status"] == "ok"]


def _short_columns(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The terminal table: what fits 120 columns (bench.md has every column)."""
    with_acc = result.get("data") is not None
    head = ["row", "batch", "p50 ms", "p90 ms", "IQR/p50", "speed-up [95% CI]", "img/s", "status"]
    if with_acc:
        head += ["mean AUC", "agree"]
    cells = []
    for r in _ok(result):
        h = r["latency"]["host"]
        row = [row_label(r), str(r["batch_size"]), _fmt(h["p50_ms"]), _fmt(h["p90_ms"]), _pct(h["spread"], 0),
               speedup_text(r), _fmt(h["throughput"], 0), _flag(r)]
        if with_acc:
            a = r.get("accuracy") or {}
            row += [_fmt(a.get("mean_auc"), 3), _pct((a.get("agreement") or {}).get("top1_agreement"))]
        cells.append(row)
    return head, cells


def _full_columns(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Every column, for bench.md. No header may contain a pipe: GFM would split the table there."""
    with_acc = result.get("data") is not None
    head = ["backend", "precision", "batch", "mean ms", "p50 ms", "p90 ms", "p99 ms", "min ms", "max ms",
            "IQR/p50", "CV", "img/s", "speed-up", "95% CI", "build s", "warm-up s", "iters/round", "stable",
            "deployable"]
    gpu = any("device_compute" in (r.get("latency") or {}) for r in result["rows"])
    if gpu:
        head += ["GPU compute ms", "GPU graph ms"]
    if with_acc:
        head += ["ACC", "bal ACC", "MEL AUC", "SK AUC", "mean AUC", "agree", "max abs dp"]
    cells = []
    for r in _ok(result):
        h, lat = r["latency"]["host"], r["latency"]
        ci = r.get("speedup_ci95")
        precision = r["precision"] + (f" ({100 * r['int8_mac_fraction']:.0f} % MACs INT8)"
                                      if r.get("int8_mac_fraction") is not None else "")
        row = [r["backend"], precision, str(r["batch_size"]), _fmt(h["mean_ms"]), _fmt(h["p50_ms"]),
               _fmt(h["p90_ms"]), _fmt(h["p99_ms"]), _fmt(h["min_ms"]), _fmt(h["max_ms"]), _pct(h["spread"]),
               _pct(h["cv"]), _fmt(h["throughput"], 1), speedup_text(r, ci=False),
               f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else "–", _fmt(lat.get("build_s"), 1), _fmt(lat.get("warmup_s"), 1),
               str(lat.get("iters_per_round", "–")), "no" if r["stability"]["unstable"] else "yes",
               "yes" if r.get("deployable") else "no"]
        if gpu:
            dc, dg = lat.get("device_compute") or {}, lat.get("device_compute_graph") or {}
            row += [_fmt(dc.get("p50_ms"), 3), _fmt(dg.get("p50_ms"), 3)]
        if with_acc:
            a = r.get("accuracy") or {}
            agreement = a.get("agreement") or {}
            maxdiff = agreement.get("max_abs_prob_diff")
            row += [_pct(a.get("accuracy")), _pct(a.get("balanced_accuracy")), _fmt(a.get("mel_auc"), 3),
                    _fmt(a.get("sk_auc"), 3), _fmt(a.get("mean_auc"), 3), _pct(agreement.get("top1_agreement")),
                    "–" if maxdiff is None else f"{maxdiff:.1e}"]
        cells.append(row)
    return head, cells


def _skipped(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(backend precision (batch ...), reason), one line per distinct reason and runner."""
    seen: dict[tuple[str, str], list[str]] = {}
    for r in result["rows"]:
        if r["status"] == "ok":
            continue
        seen.setdefault((row_label(r), r["reason"]), []).append(str(r["batch_size"]))
    return [(f"{label} (batch {', '.join(bs)})", reason) for (label, reason), bs in seen.items()]


def warnings(result: dict[str, Any]) -> list[str]:
    """What makes numbers in this report untrustworthy: a busy machine, unstable rows (with why)."""
    lines = []
    machine = result.get("stability") or {}
    if machine.get("busy"):
        lines.append("machine busy: " + "; ".join(machine["reasons"]) + ". Every row is marked unstable and no "
                     "speed-up is claimed; rerun on an idle machine")
    unstable = [r for r in _ok(result) if r["stability"]["unstable"]]
    if unstable and not machine.get("busy"):
        for r in unstable:
            lines.append(f"unstable: {row_label(r)} batch {r['batch_size']}: " + "; ".join(r["stability"]["reasons"]))
    return lines


def headline(result: dict[str, Any]) -> list[str]:
    """Per batch size: the fastest stable artifact the runtime can deploy, its speed-up and interval."""
    ref = result.get("reference", "torch fp32")
    lines = []

    def claim(bs: str, best: dict[str, Any], what: str) -> str:
        if best.get("label") is None:
            return (f"batch {bs}: no claim: every deployable row{what} is unstable "
                    f"({', '.join(best['unstable_left_out'])})")
        ci = best.get("speedup_ci95")
        interval = f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else ""
        agree = best.get("top1_agreement")
        text = (f"batch {bs}: fastest deployable artifact{what} is {best['label']} at p50 {best['p50_ms']:.2f} ms, "
                f"{best['speedup']:.2f}x faster than {ref}{interval}"
                + (f", top-1 agreement {100 * agree:.1f}%" if agree is not None else ""))
        if best.get("unstable_left_out"):
            text += f" (left out as unstable: {', '.join(best['unstable_left_out'])})"
        return text

    for bs, best in sorted(result.get("fastest", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(claim(bs, best, ""))
    target = result.get("agreement_target") or 0.995
    for bs, best in sorted(result.get("fastest_agreeing", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(claim(bs, best, f" at >= {100 * target:.1f}% top-1 agreement"))
    if lines:
        from dsedge.bench.rows import recommendation

        # within the budget: the agreement target when accuracy was measured, else speed alone
        budget = result.get("fastest_agreeing") or result.get("fastest") or {}
        lines.append(recommendation(budget))
    return lines


def _title(result: dict[str, Any]) -> str:
    env, s = result["environment"], result["settings"]
    return (f"{result['source'].get('model', 'ds_resnet50')} {s.get('image_size')}x{s.get('image_size')}, "
            f"{env['threads']} threads, {env['cpu']}" + (f", GPU {env['gpu']['name']}" if env.get("gpu") else ""))


def print_table(result: dict[str, Any], console: Console) -> None:
    """The terminal view: what ran where, warnings, the 120-column table, skipped rows, the headline."""
    console.print(f"[bold]dsedge bench[/] {escape(_title(result))}", highlight=False)
    console.print(f"[dim]{escape(result['source']['description'])}[/]", highlight=False)
    head, cells = _short_columns(result)
    table = Table(box=box.SIMPLE_HEAD, show_lines=False, pad_edge=False)
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for row in cells:
        style = "yellow" if row[7] == "UNSTABLE" else None
        table.add_row(*row, style=style)
    width = console.width
    console.width = 120  # the table's width everywhere (piped output defaults to 80 and would truncate numbers)
    try:
        console.print(table)
    finally:
        console.width = width
    for label, reason in _skipped(result):
        console.print(f"[yellow]skipped[/] {escape(label)}: {escape(reason)}", highlight=False)
    for line in warnings(result):
        console.print(f"[bold red]WARNING[/] [red]{escape(line)}[/]", highlight=False)
    for line in headline(result):
        style = "yellow" if line.split(": ", 1)[1].startswith("no claim") else "green"
        console.print(f"[{style}]{escape(line)}[/]", highlight=False)
    console.print("[dim]full table (mean/p99/min/max, CV, warm-up, accuracy): bench.md[/]", highlight=False)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(result: dict[str, Any]) -> str:
    """bench.md: environment, source notes, warnings, the full table, skipped rows, headline."""
    env, m = result["environment"], result.get("stability") or {}
    lines = ["# dsedge bench", "", f"- run: {_title(result)}", f"- date: {result['created']}",
             f"- source: {result['source']['description']}",
             f"- CPU: {env['cpu']} ({env['cpu_count']} logical CPUs; flags: {', '.join(env['cpu_flags']) or '–'})",
             f"- threads: {env['threads']}",
             f"- GPU: {env['gpu']['name']} (driver {env['gpu']['driver']})" if env.get("gpu") else "- GPU: none",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
             f"- timing: {result['settings']['timing']}"]
    if m:
        during = m.get("during") or {}
        lines.append(f"- machine: other processes used {_pct((m.get('before') or {}).get('other_cpu'), 0)} of the "
                     f"CPUs before the run, {_pct(during.get('other_cpu'), 0)} during the rounds; "
                     f"steal {_pct(during.get('steal'), 0)}; load average up to "
                     f"{_fmt(during.get('loadavg_max'))}")
    lines += [f"- note: {n}" for n in result["source"].get("notes", [])] + [""]
    if result.get("data"):
        d = result["data"]
        lines += [f"- data: {d['root']} split {d['split']} ({d['n']} images: "
                  + ", ".join(f"{c} {n}" for c, n in d["class_counts"].items()) + ")",
                  f"- agreement reference: {result['agreement_reference']}", ""]
    lines += [f"> **Warning:** {_md_cell(w)}" + "\n" for w in warnings(result)]
    head, cells = _full_columns(result)
    lines += ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in cells]
    skipped = _skipped(result)
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {label}: {reason}" for label, reason in skipped]
    hl = headline(result)
    if hl:
        lines += ["", "Headline (stable rows of backends the runtime can deploy):", ""] + [f"- {x}" for x in hl]
    lines += end_to_end_markdown(result.get("end_to_end") or [])
    return "\n".join(lines) + "\n"


def end_to_end_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """bench.md's per-image split (decode / quality / preprocess / infer / post), or why it is missing."""
    if not rows:
        return []
    lines = ["", "End to end per image (ms; median of 3 passes, after the rounds): what a device pays "
             "beyond the engine.", ""]
    for r in rows:
        lines += [r["markdown"], ""] if r.get("markdown") else [f"- {r['backend']} {r['precision']}: "
                                                                  f"not timed ({r.get('skipped')})"]
    return lines


def write_report(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write bench.json, bench.md and the PNG plots into `out`; returns name -> path."""
    from dsedge.bench.plots import write_plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"bench.md": out / "bench.md", "bench.json": out / "bench.json"}
    for name in write_plots(result, out, _title(result)):
        files[name] = out / name
    result["files"] = sorted(files)
    atomic_write_text(files["bench.md"], markdown(result))
    atomic_write_json(files["bench.json"], json.loads(json.dumps(result, default=str)))
    return files
