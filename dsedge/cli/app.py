"""The typer application object and the shared consoles (kept apart to avoid import cycles)."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="dsedge",
    help=(
        "DS-ResNet50 dermoscopy classifier, from training to an embedded engine.\n\n"
        "Pipeline: data check -> train -> eval -> export -> calibrate -> build -> bench / predict."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

console = Console()
err_console = Console(stderr=True)
