"""`dsedge predict BUNDLE IMAGE...`: class probabilities per image with the best runner available."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from dsedge.cli.app import app, console


@app.command("predict")
def predict_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (from `dsedge export`)."),
    images: list[Path] = typer.Argument(..., help="Image files (JPEG, PNG, ...)."),
    backend: str = typer.Option("auto", "--backend", "-b", help="auto | tensorrt | onnxruntime."),
    precision: str = typer.Option(None, "--precision", "-p", help="fp32 | fp16 | int8 (default: best available)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Images per inference call."),
    json_out: bool = typer.Option(False, "--json", help="Print results as JSON."),
) -> None:
    """Classify images: probability of every class and the top class (TensorRT if built here, else ONNX Runtime)."""
    from dsedge.runtime.predict import Predictor

    with Predictor(bundle, backend=backend, precision=precision) as predictor:
        results = predictor.predict(images, batch_size=batch_size)
        info = predictor.info
        reason = predictor.fallback_reason
    if json_out:
        print(json.dumps({"runner": info.to_dict(), "fallback_reason": reason, "results": results}, indent=2))
        return
    classes = list(results[0]["probabilities"]) if results else []
    table = Table(title=f"{bundle}  ({info.backend} {info.precision}, {info.device})")
    table.add_column("image", overflow="fold")
    for c in classes:
        table.add_column(c, justify="right")
    table.add_column("top class", style="bold")
    for r in results:
        probs = [f"{r['probabilities'][c]:.3f}" for c in classes]
        table.add_row(Path(r["image"]).name, *probs, f"{r['top_class']} ({r['top_probability']:.2f})")
    console.print(table)
    if reason and backend == "auto":
        console.print(f"[dim]TensorRT not used: {reason}[/]", highlight=False)
