"""Bench outputs: the environment block, a rich table, bench.json, bench.md and PNG plots.

A latency number is meaningless without the machine that produced it, so every
report starts with the environment (CPU model and flags, threads, GPU, driver,
library versions) and says whether the weights were trained or random and
whether the data was real or synthetic. Skipped rows stay in the report with
their reason, so a missing backend is visible rather than silently absent.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dsedge.utils.io import atomic_path, atomic_write_json, atomic_write_text

_INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "fma",
                      "asimd", "sve", "bf16", "i8mm")
_PACKAGES = ("dsedge", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "cuda-python",
             "numpy")


def _cpu_model() -> str:
    from dsedge.doctor import cpu_info

    return str(cpu_info()["model"])


def _gpu() -> dict[str, Any] | None:
    """GPU name and driver from nvidia-smi (None without an NVIDIA GPU); no torch needed."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, driver, mem = (s.strip() for s in out.splitlines()[0].split(","))
    return {"name": name, "driver": driver, "memory": mem, "count": len(out.splitlines())}


def environment(threads: int | None = None) -> dict[str, Any]:
    """What produced the numbers: host, CPU, threads, GPU/driver, library versions."""
    from dsedge.engines.openvino_runner import cpu_flags

    flags = cpu_flags()
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": [f for f in _INTERESTING_FLAGS if f in flags],
        "threads": threads or "default (all cores)",
        "gpu": _gpu(),
        "versions": versions,
    }


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def row_label(row: dict[str, Any]) -> str:
    return f"{row['backend']} {row['precision']}"


def _columns(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the terminal table and the Markdown table."""
    with_acc = result.get("data") is not None
    head = ["backend", "precision", "batch", "mean ms", "p50", "p90", "p99", "min", "max", "img/s", "speed-up", "warm-up s"]
    if any("device_compute" in (r.get("latency") or {}) for r in result["rows"]):
        head += ["GPU compute ms", "GPU graph ms"]
    if with_acc:
        head += ["ACC", "bal ACC", "MEL AUC", "SK AUC", "agree", "max |dp|"]
    cells = []
    for r in result["rows"]:
        if r["status"] != "ok":
            continue
        h = r["latency"]["host"]
        row = [r["backend"], r["precision"], str(r["batch_size"]), _fmt(h["mean_ms"]), _fmt(h["p50_ms"]),
               _fmt(h["p90_ms"]), _fmt(h["p99_ms"]), _fmt(h["min_ms"]), _fmt(h["max_ms"]), _fmt(h["throughput"], 1),
               _fmt(r.get("speedup")) + ("x" if r.get("speedup") is not None else ""),
               _fmt(r["latency"].get("warmup_s"), 1)]
        if "GPU compute ms" in head:
            dc = r["latency"].get("device_compute") or {}
            dg = r["latency"].get("device_compute_graph") or {}
            row += [_fmt(dc.get("p50_ms"), 3), _fmt(dg.get("p50_ms"), 3)]
        if with_acc:
            a = r.get("accuracy") or {}
            agreement = a.get("agreement") or {}
            maxdiff = agreement.get("max_abs_prob_diff")
            row += [_pct(a.get("accuracy")), _pct(a.get("balanced_accuracy")), _fmt(a.get("mel_auc"), 3),
                    _fmt(a.get("sk_auc"), 3), _pct(agreement.get("top1_agreement")),
                    "–" if maxdiff is None else f"{maxdiff:.1e}"]
        cells.append(row)
    return head, cells


def _skipped(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(backend precision [batch], reason), one line per distinct reason and runner."""
    seen: dict[tuple[str, str], list[str]] = {}
    for r in result["rows"]:
        if r["status"] == "ok":
            continue
        seen.setdefault((row_label(r), r["reason"]), []).append(str(r["batch_size"]))
    return [(f"{label} (batch {', '.join(bs)})", reason) for (label, reason), bs in seen.items()]


def print_table(result: dict[str, Any], console: Console) -> None:
    """The terminal view: environment line, the table, skipped rows, the headline."""
    env = result["environment"]
    console.print(f"[bold]dsedge bench[/] on {env['cpu']} ({env['threads']} threads)"
                  + (f", GPU {env['gpu']['name']}" if env.get("gpu") else ""), highlight=False)
    console.print(f"[dim]{escape(result['source']['description'])}[/]", highlight=False)
    head, cells = _columns(result)
    table = Table(show_lines=False)
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i < 2 else "right")
    for row in cells:
        table.add_row(*row)
    if console.is_terminal:
        console.print(table)
    else:  # piped / logged: rich would squeeze the table into 80 columns and truncate every number
        width = console.width
        console.width = max(width, 170)
        try:
            console.print(table)
        finally:
            console.width = width
    for label, reason in _skipped(result):
        console.print(f"[yellow]skipped[/] {escape(label)}: {escape(reason)}", highlight=False)
    for line in headline(result):
        console.print(f"[green]{line}[/]", highlight=False)


def headline(result: dict[str, Any]) -> list[str]:
    """One sentence per batch size: the fastest row and its speed-up over eager FP32."""
    lines = []
    for bs, best in sorted(result.get("fastest", {}).items(), key=lambda kv: int(kv[0])):
        agree = best.get("top1_agreement")
        extra = f", top-1 agreement {100 * agree:.1f}%" if agree is not None else ""
        lines.append(f"batch {bs}: fastest dsedge artifact is {best['label']} at p50 {best['p50_ms']:.2f} ms "
                     f"({best['speedup']:.2f}x PyTorch eager FP32{extra})")
    target = result.get("agreement_target")
    for bs, best in sorted(result.get("fastest_agreeing", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"batch {bs}: fastest at >= {100 * target:.1f}% top-1 agreement is {best['label']} "
                     f"at p50 {best['p50_ms']:.2f} ms ({best['speedup']:.2f}x PyTorch eager FP32, "
                     f"agreement {100 * best['top1_agreement']:.1f}%)")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """bench.md: environment, source note, the table, skipped rows, headline."""
    env = result["environment"]
    lines = ["# dsedge bench", "", f"- date: {result['created']}", f"- source: {result['source']['description']}",
             f"- CPU: {env['cpu']} ({env['cpu_count']} logical CPUs; flags: {', '.join(env['cpu_flags']) or '–'})",
             f"- threads: {env['threads']}",
             f"- GPU: {env['gpu']['name']} (driver {env['gpu']['driver']})" if env.get("gpu") else "- GPU: none",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
             f"- timing: {result['settings']['timing']}"]
    lines += [f"- note: {n}" for n in result["source"].get("notes", [])] + [""]
    if result.get("data"):
        d = result["data"]
        lines += [f"- data: {d['root']} split {d['split']} ({d['n']} images: "
                  + ", ".join(f"{c} {n}" for c, n in d["class_counts"].items()) + ")",
                  f"- agreement reference: {result['agreement_reference']}", ""]
    head, cells = _columns(result)
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    skipped = _skipped(result)
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {label}: {reason}" for label, reason in skipped]
    hl = headline(result)
    if hl:
        lines += [""] + [f"- {line}" for line in hl]
    return "\n".join(lines) + "\n"


def _plots(result: dict[str, Any], out: Path) -> list[str]:
    """latency.png (mean latency by batch size per row) and, with data, accuracy_latency.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in result["rows"] if r["status"] == "ok"]
    written = []
    if not ok:
        return written
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(row_label(r) for r in ok):
        rows = sorted((r for r in ok if row_label(r) == label), key=lambda r: r["batch_size"])
        ax.plot([r["batch_size"] for r in rows], [r["latency"]["host"]["p50_ms"] / r["batch_size"] for r in rows],
                marker="o", label=label)
    sizes = sorted({r["batch_size"] for r in ok})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("p50 latency per image (ms)")
    ax.set_title(f"dsedge bench — {result['environment']['cpu']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "latency.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    written.append("latency.png")
    acc_rows = [r for r in ok if r.get("accuracy") and r["batch_size"] == min(x["batch_size"] for x in ok)]
    if acc_rows:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for r in acc_rows:
            ax.scatter(r["latency"]["host"]["p50_ms"], 100 * r["accuracy"]["accuracy"], label=row_label(r))
        ax.set_xscale("log")
        ax.legend(fontsize=7)  # a legend, not annotations: equal-accuracy rows overlap
        ax.set_xlabel(f"p50 latency at batch {acc_rows[0]['batch_size']} (ms)")
        ax.set_ylabel(f"accuracy on {result['data']['split']} (%)")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        with atomic_path(out / "accuracy_latency.png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        written.append("accuracy_latency.png")
    return written


def write_report(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write bench.json, bench.md and the PNG plots into `out`; returns name -> path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"bench.md": out / "bench.md", "bench.json": out / "bench.json"}
    for name in _plots(result, out):
        files[name] = out / name
    result["files"] = sorted(files)
    atomic_write_text(files["bench.md"], markdown(result))
    atomic_write_json(files["bench.json"], json.loads(json.dumps(result, default=str)))
    return files
