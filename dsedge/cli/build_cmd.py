"""`dsedge build BUNDLE`: a TensorRT engine for this GPU from the bundle's ONNX (calls `build_engine`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dsedge.cli.app import app, console


@app.command("build")
def build_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (from `dsedge export`)."),
    precision: str = typer.Option(
        "fp16", "--precision", "-p",
        help="fp32 | fp16 | int8: builds from model.onnx, model.fp16.onnx, or for int8 model.int8-fp16.onnx "
        "(else model.int8.onnx). Writes model.<precision>.<gpu>.trt<version>.plan.",
    ),
    min_batch: int = typer.Option(1, "--min-batch", help="Smallest batch of the optimization profile."),
    opt_batch: int = typer.Option(8, "--opt-batch", help="Batch size TensorRT tunes kernels for."),
    max_batch: int = typer.Option(32, "--max-batch", help="Largest batch the engine accepts."),
    workspace_gb: float = typer.Option(4.0, "--workspace-gb", help="Builder workspace memory limit (GiB)."),
    opt_level: int = typer.Option(3, "--opt-level", help="Builder optimization level 0-5 (higher: slower build)."),
    timing_cache: Path = typer.Option(None, "--timing-cache", help="Timing cache file (default: in the bundle)."),
    version_compatible: bool = typer.Option(False, "--version-compatible", help="Engine that also runs on newer TensorRT (same major; 10.x plans also on 11.x)."),
    strongly_typed: bool = typer.Option(
        None, "--strongly-typed/--weakly-typed",
        help="Default: strongly typed, precision from the ONNX (fp16 from model.fp16.onnx, int8 from the Q/DQ model). "
        "--weakly-typed (TensorRT 10 only; deprecated there from 10.12) uses BuilderFlag.FP16/INT8 instead.",
    ),
    tf32: bool = typer.Option(
        False, "--tf32/--no-tf32",
        help="fp32 only: allow TF32 (10-bit mantissa) convolutions on Ampere and newer; default is strict FP32.",
    ),
    device: int = typer.Option(0, "--device", help="CUDA device index to build on."),
    force: bool = typer.Option(False, "--force", help="Replace an existing engine."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest entry as JSON."),
) -> None:
    """Build a TensorRT engine (needs the tensorrt extra and an NVIDIA GPU)."""
    from dsedge.bundle import load_bundle
    from dsedge.engines.trt_build import build_engine

    with console.status(f"building a {precision} TensorRT engine (minutes for a full model)...", spinner="dots"):
        plan = build_engine(
            bundle, precision, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
            workspace_gb=workspace_gb, opt_level=opt_level, timing_cache=timing_cache,
            version_compatible=version_compatible, force=force, strongly_typed=strongly_typed,
            tf32=tf32, device=device,
        )
    entry = load_bundle(plan.parent, verify=False).artifacts[plan.name]
    if json_out:
        print(json.dumps({"engine": str(plan), **entry}, indent=2))
        return
    console.print(f"[green]engine written:[/] {plan}  ({entry['bytes'] / 1e6:.1f} MB)", highlight=False)
    console.print(
        f"TensorRT {entry['tensorrt_version']} on {entry['gpu']} (sm {entry['compute_capability']}), "
        f"batch {entry['profile']['min'][0]}/{entry['profile']['opt'][0]}/{entry['profile']['max'][0]}, "
        f"built in {entry['build_seconds']} s",
        highlight=False,
    )
    tf32_note = {True: "TF32 on", False: "TF32 off", None: "TF32 unknown"}[entry.get("tf32")]
    console.print(f"{entry.get('typing', '?')}; {tf32_note}", highlight=False)
    counts = (entry.get("layer_precisions") or {}).get("counts")
    if counts:
        console.print("layers: " + ", ".join(f"{n} {p}" for p, n in counts.items()), highlight=False)
