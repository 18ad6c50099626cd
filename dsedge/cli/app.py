"""The typer application object and the shared consoles (kept apart to avoid import cycles).

Both consoles use `soft_wrap=True`: when stdout is not a terminal, rich would
otherwise hard-wrap every line at 80 columns, which splits an error message
(and any path or JSON in it) across lines and breaks scripts and tests that
grep the output. A terminal still folds long lines itself.
"""

from __future__ import annotations

import typer
from rich.console import Console

from dsedge import __version__


def _version(value: bool) -> None:
    """`dsedge --version`: print the version and exit before any command runs."""
    if value:
        print(f"dsedge {__version__}")
        raise typer.Exit(0)


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


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the dsedge version and exit."),
) -> None:
    """DS-ResNet50 dermoscopy classifier, from training to an embedded engine."""


console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
