"""`dsedge doctor`: what can run here — GPU, CUDA, TensorRT, ONNX Runtime providers, CPU features."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from dsedge.cli.app import app, console


@app.command("doctor")
def doctor_command(
    json_out: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Report the accelerators, libraries and CPU features dsedge can use on this machine."""
    from dsedge.doctor import doctor

    report = doctor()
    if json_out:
        print(json.dumps(report, indent=2, default=str))
        return
    table = Table(title="dsedge doctor", show_header=True)
    table.add_column("component")
    table.add_column("status")
    for name, row in report["summary"].items():
        ok, detail = row["ok"], escape(str(row["detail"]))
        table.add_row(name, f"[green]{detail}[/]" if ok else f"[yellow]{detail}[/]")
    console.print(table)
    console.print("[bold]usable backends:[/] " + ", ".join(report["backends"]), highlight=False)
