"""`dsedge models`: the registry with parameter counts and compute at each model's input size,
and the shipped weights at the size they were trained and run at."""

from __future__ import annotations

import typer
from rich.table import Table

from dsedge.cli.app import app, console


@app.command("models")
def models_command(
    flops: bool = typer.Option(True, "--flops/--no-flops", help="Count GFLOPs (takes a few seconds)."),
) -> None:
    """List the models `dsedge train --model` accepts and the shipped weights: parameters and GFLOPs (3 classes)."""
    from dsedge.models.zoo import list_models, list_shipped
    from dsedge.utils.progress import progress

    with progress("models", console=console) as shown:  # plain lines on stderr when piped
        shown.note("building models" + (" and counting FLOPs" if flops else ""))
        rows = list_models(with_flops=flops)
        shown.note("shipped weights")
        shipped = list_shipped(with_flops=flops)
    table = Table(title="dsedge models (3 classes)")
    table.add_column("model")
    table.add_column("input (px)", justify="right")
    table.add_column("params (M)", justify="right")
    if flops:
        table.add_column("GFLOPs", justify="right")
        table.add_column("GMACs", justify="right")
    table.add_column("description")
    for r in [*rows, *shipped]:
        cells = [str(r["name"]), f"{r['input_size']}", f"{r['params_m']:.2f}"]
        if flops:
            cells += [f"{r['gflops']:.2f}", f"{r['gmacs']:.2f}"]
        table.add_row(*cells, str(r["description"]))
    console.print(table)
    console.print("[dim]input: the default training size of a new model; shipped weights (pretrained=NAME) "
                  "run at the size they were trained at. GFLOPs = 2 x multiply-accumulates of convolutions and "
                  "matmuls, one image.[/]", highlight=False)
