"""`dsedge data check PATH`: per split and class counts, and every problem found."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dsedge import ISIC2017_CLASSES
from dsedge.cli.app import app, console

data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _class_order(name: str) -> int:
    """Table order: the ISIC 2017 classes first, in their usual order, then any other class."""
    return ISIC2017_CLASSES.index(name) if name in ISIC2017_CLASSES else len(ISIC2017_CLASSES)


@data_app.command("check")
def check_command(
    path: Path = typer.Argument(..., help="ISIC 2017 folder, ROOT/<split>/<CLASS>/ tree, or path,label CSV."),
    verify_images: bool = typer.Option(True, "--verify-images/--no-verify-images", help="Decode every image."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    strict: bool = typer.Option(False, "--strict", help="Fail on warnings too (e.g. unlisted images)."),
    quality: bool = typer.Option(False, "--quality", help="Also run predict's input-quality checks on every image."),
) -> None:
    """Count images per split and class and report every problem (exit 1 when there are errors)."""
    from dsedge.data.check import check_data

    with Progress(
        TextColumn("decoding images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=json_out,
    ) as bar:
        task = bar.add_task("check", total=None)
        report = check_data(
            path,
            verify_images=verify_images,
            quality=quality,
            progress=lambda n: bar.advance(task, n),
            on_total=lambda n: bar.update(task, total=n),
        )
    if json_out:
        console.print_json(json.dumps(report.to_dict()))
    else:
        classes = sorted({c for counts in report.counts.values() for c in counts}, key=_class_order)
        table = Table(title=f"{path} ({report.layout})")
        table.add_column("split")
        for c in classes:
            table.add_column(c, justify="right")
        table.add_column("total", justify="right")
        for split, counts in report.counts.items():
            table.add_row(split, *[str(counts.get(c, 0)) for c in classes], str(sum(counts.values())))
        console.print(table)
        for w in report.warnings:
            console.print(f"[yellow]warning:[/] {w}", highlight=False)
        for e in report.errors:
            console.print(f"[red]error:[/] {e}", highlight=False)
        console.print("[green]no problems found[/]" if report.ok and not report.warnings else
                      f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    if not report.ok or (strict and report.warnings):
        raise typer.Exit(1)
