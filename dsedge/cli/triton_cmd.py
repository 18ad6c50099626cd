"""`dsedge export-triton BUNDLE REPO`: a Triton Inference Server model repository from a bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from dsedge.cli.app import app, console


@app.command("export-triton")
def export_triton_command(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    repo: Path = typer.Argument(..., help="Model repository folder (created if missing)."),
    model_name: str = typer.Option("dsedge", "--name", help="Triton model name."),
    max_batch: int = typer.Option(32, "--max-batch", help="max_batch_size (<= the engine's profile max)."),
    backend: list[str] = typer.Option(["tensorrt", "onnx"], "--backend", help="tensorrt and/or onnx (repeatable)."),
    precision: str = typer.Option(None, "--precision", help="Artifact precision (default: fp16 engine, fp32 ONNX)."),
    dynamic_batching: bool = typer.Option(True, "--dynamic-batching/--no-dynamic-batching"),
    force: bool = typer.Option(False, "--force", help="Replace existing model folders."),
    gpu: str = typer.Option(None, "--gpu", help="GPU model of the serving machine (e.g. 'NVIDIA L4'): picks its engine."),
    tensorrt_version: str = typer.Option(None, "--tensorrt-version", help="TensorRT release of the serving Triton (e.g. 10.13.3)."),
) -> None:
    """Write <REPO>/<name>/config.pbtxt, <name>/1/model.plan|model.onnx and labels.txt."""
    from dsedge.export.triton import export_triton, server_args

    written = export_triton(
        bundle, repo, model_name=model_name, max_batch=max_batch, backends=tuple(backend),
        dynamic_batching=dynamic_batching, precision=precision, force=force, gpu=gpu,
        tensorrt_version=tensorrt_version,
    )
    console.print(f"[green]Triton repository:[/] {written}", highlight=False)
    for d in sorted(p for p in written.iterdir() if (p / "config.pbtxt").is_file()):
        console.print(f"  {d.name}/config.pbtxt", highlight=False)
    extra = "".join(f" {a}" for a in server_args(written))
    console.print(f"[dim]serve with: tritonserver --model-repository {written}{extra}[/]", highlight=False)
