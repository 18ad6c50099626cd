"""`dsedge calibrate BUNDLE --data DIR`: ISIC-calibrated INT8 (TensorRT Q/DQ) within an accuracy budget."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dsedge.cli.app import app


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _num(v: Any, signed: bool = False) -> str:
    return "–" if v is None else (f"{v:+.4f}" if signed else f"{v:.4f}")


def _print_summary(console: Console, result: dict[str, Any]) -> None:
    sens = result.get("sensitivity")
    if sens:
        ref = sens["reference_fp32"]
        table = Table(title=f"INT8 sensitivity ({sens['n_images']} validation images)")
        for col, just in (("model", "left"), ("ACC %", "right"), ("ACC drop", "right"), ("mean AUC", "right"),
                          ("AUC drop", "right"), ("agree %", "right")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        table.add_row("FP32 reference", _pct(ref["accuracy"]), "–", _num(ref.get("mean_auc")), "–", "100.00")

        def add(label: str, r: dict[str, Any]) -> None:
            table.add_row(label, _pct(r["accuracy"]), f"{r['acc_drop_points']:+.2f}", _num(r.get("mean_auc")),
                          _num(r.get("auc_drop"), True), _pct(r["top1_agreement"]))

        add("INT8, all groups", sens["int8_all_groups"])
        for g in sens["groups"]:
            add(f"only {g['group']} ({g['nodes']} nodes)", g)
        for s in sens["steps"]:
            add(f"float: {', '.join(s['kept_float'])}", s)
        add("[bold]final INT8[/]", sens["final"])
        console.print(table)
    elif result.get("accuracy"):
        fin = result["accuracy"]["int8"]
        console.print(f"INT8 vs FP32: ACC drop {fin['acc_drop_points']:+.2f} points, "
                      f"top-1 agreement {_pct(fin['top1_agreement'])} %")
    if result.get("synthetic"):
        console.print("[yellow]calibrated on synthetic images: for smoke tests and latency only, not accuracy[/]")
    kept = result.get("kept_float_groups") or []
    console.print(f"kept in float: {', '.join(kept) or 'none'} ({len(result['excluded_nodes'])} nodes excluded)")
    console.print(f"[green]wrote[/] {result['output']}")


@app.command("calibrate")
def calibrate_command(
    bundle: Path = typer.Argument(..., help="Bundle folder made by `dsedge export` (needs model.onnx)."),
    data: Path | None = typer.Option(None, "--data", help="Dataset (ISIC 2017 layout, class folders or CSV)."),
    method: str = typer.Option("entropy", "--method", help="Calibration: entropy | minmax | percentile."),
    num_images: int = typer.Option(512, "--num-images", help="Calibration images, stratified by class."),
    seed: int = typer.Option(0, "--seed", help="Seed of the image selection and order."),
    keep_fp: list[str] = typer.Option(
        [], "--keep-fp",
        help="Keep in float: kinds (depthwise, simam, conv, gemm, add, stem, head), stages (layer1..4), "
        "module paths or node names; comma-separated or repeated.",
    ),
    max_acc_drop: float = typer.Option(0.5, "--max-acc-drop", help="Largest allowed ACC drop vs FP32, in points."),
    min_agreement: float = typer.Option(
        0.0, "--min-agreement",
        help="Also require this top-1 agreement with FP32 on the eval split (fraction, e.g. 0.95; 0 = off).",
    ),
    split: str = typer.Option("train", "--split", help="Split to calibrate on."),
    eval_split: str = typer.Option("val", "--eval-split", help="Split to check the accuracy budget on."),
    cache: bool = typer.Option(False, "--cache/--no-cache", help="Also write calibration.cache (TensorRT 10 table)."),
    sensitivity: bool = typer.Option(True, "--sensitivity/--no-sensitivity",
                                     help="Per-group analysis; keep harmful groups float to meet the budget."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Calibrate on random images (smoke test, no data)."),
) -> None:
    """Write model.int8.onnx (explicit Q/DQ that TensorRT accepts), calibrated on training images."""
    from dsedge.calibration.int8 import calibrate_bundle

    console = Console(file=sys.stdout)  # explicit file: ORT's prints are redirected while it calibrates
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task("calibration images", total=num_images)
        result = calibrate_bundle(
            bundle, data, method=method, num_images=num_images, seed=seed, keep_fp=keep_fp,
            max_acc_drop=max_acc_drop, min_agreement=min_agreement, split=split, eval_split=eval_split, write_cache=cache,
            sensitivity=sensitivity, synthetic=synthetic,
            on_images=lambda n: bar.advance(task, n),
            on_step=lambda msg: bar.update(task, description=msg),
        )
    _print_summary(console, result)
