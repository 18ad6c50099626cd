"""`dsedge calibrate BUNDLE --data DIR`: ISIC-calibrated INT8 (TensorRT Q/DQ) within an accuracy budget."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from dsedge.cli.app import app, make_console
from dsedge.config import DEFAULT_CALIBRATION_METHOD, DEFAULT_KEEP_FP
from dsedge.errors import DsedgeError


def _limit(text: str, option: str) -> float | None:
    """A budget term from the command line: a number, or 'off' to leave the term unjudged."""
    from dsedge.errors import CalibrationError

    if text.strip().lower() in ("off", "none", ""):
        return None
    try:
        return float(text)
    except ValueError as e:
        raise CalibrationError(f"{option} takes a number or 'off', got '{text}'") from e


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _num(v: Any, signed: bool = False) -> str:
    return "–" if v is None else (f"{v:+.4f}" if signed else f"{v:.4f}")


def _print_summary(console: Console, result: dict[str, Any]) -> None:
    sens = result.get("sensitivity")
    if sens:
        ref = sens["reference_fp32"]
        table = Table(title=f"INT8 sensitivity ({sens['n_images']} validation inputs)")
        for col, just in (("model", "left"), ("ACC %", "right"), ("ACC drop", "right"), ("mean AUC", "right"),
                          ("AUC drop", "right"), ("MEL AUC delta", "right"), ("agree %", "right")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        table.add_row("FP32 reference", _pct(ref["accuracy"]), "–", _num(ref.get("mean_auc")), "–", "–", "100.00")

        def add(label: str, r: dict[str, Any]) -> None:
            table.add_row(label, _pct(r["accuracy"]), f"{r['acc_drop_points']:+.2f}", _num(r.get("mean_auc")),
                          _num(r.get("auc_drop"), True), _num(r.get("mel_auc_delta"), True),
                          _pct(r["top1_agreement"]))

        if sens["int8_all_groups"]:
            add("INT8, all groups", sens["int8_all_groups"])
        for g in sens["groups"]:
            if g.get("stopped_early"):
                table.add_row(f"only {g['group']} ({g['nodes']} nodes)", "–", "–", "–", "–", "–",
                              f"<{_pct(g['top1_agreement'])}")
                continue
            add(f"only {g['group']} ({g['nodes']} nodes)", g)
        for s in sens["steps"]:
            add(f"float: {', '.join(s['kept_float'])}", s)
        if sens["final"].get("accuracy") is not None:
            add("[bold]final INT8[/]", sens["final"])
        console.print(table)
        if sens.get("trace"):
            _print_trace(console, sens["trace"])
    if result.get("accuracy"):
        from dsedge.calibration.budget import describe

        console.print("budget (all judged terms must hold):\n" + describe(result["accuracy"]["budget_terms"]))
    if result.get("synthetic"):
        console.print("[yellow]calibrated on synthetic images: for smoke tests and latency only, not accuracy[/]")
    kept = result.get("kept_float_groups") or []
    macs = result.get("int8_mac_fraction") or {}
    console.print(f"kept in float: {', '.join(kept) or 'none'} ({len(result['excluded_nodes'])} nodes excluded); "
                  f"INT8 share of MACs: {100 * macs.get('fraction', 0.0):.1f} % "
                  f"({macs.get('int8_nodes', 0)} of {macs.get('mac_nodes', 0)} conv/gemm nodes)")
    for name, claim in (result.get("claim_values") or {}).items():
        lo = (claim.get("ci") or [float("nan")])[0]
        on = claim["measured_on"]
        console.print(f"claim {name}: {100 * claim['value']:.2f} % ({claim['k']}/{claim['n']} inputs, 95 % lower bound "
                      f"{100 * lo:.2f} %) on '{on['split']}' ({on['images']} images the search never saw)"
                      + (f"; OpenVINO {100 * claim['openvino']['value']:.2f} % ({claim['openvino']['k']}/"
                         f"{claim['openvino']['n']})" if claim.get("openvino") else ""), highlight=False)
    console.print(f"[green]wrote[/] {result['output']}")


def _print_trace(console: Console, trace: list[dict[str, Any]]) -> None:
    """The grow search step by step: unit, its MAC share, the candidate's agreement, kept or not."""
    table = Table(title="grow search (units in order of budget usage per MAC saved)")
    for col in ("step", "unit", "MACs %", "INT8 MACs %", "agree %", "failed terms", "verdict"):
        table.add_column(col, justify="left" if col in ("unit", "failed terms", "verdict") else "right")
    for t in trace:
        table.add_row(str(t["step"]), t["group"], f"{100 * t['mac_share']:.2f}", _pct(t["int8_mac_fraction"]),
                      _pct(t["top1_agreement"]), ", ".join(t["failed_terms"]) or "none",
                      ("kept" if t["kept"] else "rejected") + (f" ({t['note']})" if t["note"] else ""))
    console.print(table)


def _count(text: str, flag: str) -> int | None:
    """A whole-number budget limit, or None for 'off'."""
    if text.strip().lower() == "off":
        return None
    try:
        value = int(text)
    except ValueError:
        raise DsedgeError(f"{flag} must be a whole number or 'off', got {text!r}") from None
    if value < 0:
        raise DsedgeError(f"{flag} must be >= 0, got {value}")
    return value


@app.command("calibrate")
def calibrate_command(
    bundle: Path = typer.Argument(..., help="Bundle folder made by `dsedge export` (needs model.onnx)."),
    data: Path | None = typer.Option(None, "--data", help="Dataset (ISIC 2017 layout, class folders or CSV)."),
    method: str = typer.Option(
        DEFAULT_CALIBRATION_METHOD, "--method",
        help="Activation ranges: percentile (99.99th of |x|, the default: kept the most decisions of the shipped "
        "model on held-out training images) | minmax | entropy (TensorRT's KL-divergence clipping; slow) | "
        "auto (best per tensor)."),
    num_images: int = typer.Option(512, "--num-images", help="Calibration images, stratified by class."),
    seed: int = typer.Option(0, "--seed", help="Seed of the image selection and order."),
    keep_fp: list[str] = typer.Option(
        list(DEFAULT_KEEP_FP), "--keep-fp",
        help="Keep in float: kinds (depthwise, simam, conv, gemm, add, stem, head), stages (layer1..4), "
        "module paths or node names; comma-separated or repeated. Default: depthwise (1 %% of the MACs, as many "
        "flips as all other convs); 'none' quantizes every conv.",
    ),
    min_agreement: str = typer.Option(
        "0.99", "--min-agreement", help="Budget: top-1 agreement with FP32 on the eval split, a fraction; 'off'."),
    max_mel_auc_delta: str = typer.Option("0.005", "--max-mel-auc-delta",
                                          help="Budget: largest |delta melanoma AUC|; 'off'."),
    max_acc_delta: str = typer.Option("0.5", "--max-acc-delta", help="Budget: largest |delta ACC| in points; 'off'."),
    max_mean_auc_delta: str = typer.Option("off", "--max-mean-auc-delta",
                                           help="Budget: largest |delta mean AUC|; off by default (always reported)."),
    max_mel_referrals: str = typer.Option(
        "1", "--max-mel-referrals-changed",
        help="Budget: melanoma images (as captured) whose referral at the bundle's operating point may change; "
        "'off'. Judged once `dsedge risk` has fitted a point."),
    min_int8_macs: float = typer.Option(
        0.80, "--min-int8-macs", min=0.0, max=1.0,
        help="Refuse (exit 2) an INT8 model with fewer of its multiply-accumulates in INT8 than this fraction."),
    allow_mostly_float: bool = typer.Option(
        False, "--allow-mostly-float", help="Write the best candidate even below --min-int8-macs (said in the manifest)."),
    split: str = typer.Option("train", "--split", help="Split to calibrate on."),
    eval_split: str = typer.Option(
        "val", "--eval-split",
        help="Images the weights never saw. Without a tuning slice held out at training, a seeded half of it tunes "
        "the keep-float search and the other half measures the agreement claim; with one, the slice tunes and "
        "this split reports."),
    eval_views: int = typer.Option(
        8, "--eval-views", min=1, max=8,
        help="Judge the budget on each eval image in this many of its 8 orientations (rotations, mirror "
        "images): 150 images x 8 resolve 0.08 % agreement instead of 0.67 %. 1: the images as they are."),
    cache: bool = typer.Option(False, "--cache/--no-cache", help="Also write calibration.cache (TensorRT 10 table)."),
    sensitivity: bool = typer.Option(True, "--sensitivity/--no-sensitivity",
                                     help="Per-group analysis; keep harmful groups float to meet the budget."),
    search: str = typer.Option(
        "grow", "--search",
        help="grow: add INT8 per bottleneck block to the float model, least budget used per MAC first, each kept "
        "only if the budget holds | greedy: quantize all, keep the most harmful stages float until it holds."),
    search_min_agreement: str = typer.Option(
        "off", "--search-min-agreement",
        help="grow: accept an addition only at this tuning agreement (a margin above --min-agreement for unseen "
        "images); 'off' = the budget's."),
    search_runtime: str = typer.Option(
        "auto", "--search-runtime",
        help="Runtime of the search's candidates: openvino (real INT8 kernels, ~4x faster on CPUs) | onnxruntime | "
        "auto (openvino when installed and the input is at least 96 px). The claims are measured on onnxruntime either way."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Calibrate on random images (smoke test, no data)."),
    mixed_fp16: bool = typer.Option(True, "--mixed-fp16/--no-mixed-fp16",
                                    help="Also write model.int8-fp16.onnx (float layers FP16 for TensorRT)."),
    weights: Path | None = typer.Option(
        None, "--weights",
        help="Quantize these weights instead of the bundle's: a `dsedge qat ... --bundle BUNDLE` checkpoint of the "
        "bundle's model. The ranges come from model.onnx and every claim is measured against it."),
) -> None:
    """Write model.int8.onnx (explicit Q/DQ that TensorRT accepts), calibrated on training images."""
    from dsedge.calibration.budget import Budget
    from dsedge.calibration.int8 import calibrate_bundle
    from dsedge.utils.io import ensure_writable
    from dsedge.utils.progress import progress

    ensure_writable(bundle, with_temp_dir=True)  # read-only bundle / full disk: exit 2 now, not after the run
    budget = Budget(min_agreement=_limit(min_agreement, "--min-agreement"),
                    max_mel_auc_delta=_limit(max_mel_auc_delta, "--max-mel-auc-delta"),
                    max_acc_delta_points=_limit(max_acc_delta, "--max-acc-delta"),
                    max_mean_auc_delta=_limit(max_mean_auc_delta, "--max-mean-auc-delta"),
                    mel_recall_not_lower=False,
                    max_mel_referrals_changed=_count(max_mel_referrals, "--max-mel-referrals-changed"))

    console = make_console(file=sys.stdout)  # explicit file: ORT's prints are redirected while it calibrates
    passes = 3 if method == "auto" else 1  # auto calibrates with each of the three methods
    with progress("calibrate", total=num_images * passes, console=console) as shown:  # plain lines when piped
        result = calibrate_bundle(
            bundle, data, method=method, num_images=num_images, seed=seed, keep_fp=keep_fp, budget=budget,
            split=split, eval_split=eval_split, eval_views=eval_views, write_cache=cache, sensitivity=sensitivity,
            synthetic=synthetic, min_int8_fraction=None if allow_mostly_float else min_int8_macs,
            mixed_fp16=mixed_fp16, search=search,
            search_min_agreement=_limit(search_min_agreement, "--search-min-agreement"),
            search_runtime_name=search_runtime, on_images=shown.advance, on_step=shown.note, weights=weights,
        )
    _print_summary(console, result)
