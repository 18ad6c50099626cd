"""The typer application object and the shared consoles (kept apart to avoid import cycles).

Every console comes from `dsedge.utils.console.make_console`: `soft_wrap=True`, and when its file is
not a terminal (`dsedge predict ... | cat`, a log file, CI) a width of
`PIPE_WIDTH` columns instead of rich's default 80. Off a terminal rich
otherwise hard-wraps text and squeezes tables to 80 columns, which split an
error message, a path or a table row over lines and broke scripts that grep
the output (issue 26). A terminal still gets its real width. `COLUMNS` wins
when set.
"""

from __future__ import annotations

import typer

from dsedge import __version__
from dsedge.utils.console import PIPE_WIDTH, make_console  # noqa: F401 - re-exported for the commands


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


console = make_console()
err_console = make_console(stderr=True)
