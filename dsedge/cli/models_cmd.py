"""`dsedge models`: the registry with parameter counts and compute at each model's input size."""

from __future__ import annotations

import typer
from rich.table import Table

from dsedge.cli.app import app, console


@app.command("models")
def models_command(
    flops: bool = typer.Option(True, "--flops/--no-flops", help="Count GFLOPs (takes a few seconds)."),
) -> None:
    """List the models `dsedge train --model` accepts: parameters and GFLOPs (3-class heads)."""
    from dsedge.models.zoo import list_models

    with console.status("building models and counting FLOPs..."):
        rows = list_models(with_flops=flops)
    table = Table(title="dsedge models (3 classes)")
    table.add_column("model")
    table.add_column("input", justify="right")
    table.add_column("params (M)", justify="right")
    if flops:
        table.add_column("GFLOPs", justify="right")
        table.add_column("GMACs", justify="right")
    table.add_column("description")
    for r in rows:
        cells = [str(r["name"]), f"{r['input_size']}", f"{r['params_m']:.2f}"]
        if flops:
            cells += [f"{r['gflops']:.2f}", f"{r['gmacs']:.2f}"]
        table.add_row(*cells, str(r["description"]))
    console.print(table)
    console.print("[dim]GFLOPs = 2 x multiply-accumulates of convolutions and matmuls, one image.[/]")
