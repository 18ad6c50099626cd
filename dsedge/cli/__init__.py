"""The `dsedge` command line: a thin typer shell around one entry function per stage.

Each command module in this package registers its command(s) on `app` and only
parses options and calls into the pipeline (`dsedge.data`, `dsedge.train`, ...).
`main()` turns every `DsedgeError` into a red message and exit code 2, and any
other exception into a one-line "internal error" (full traceback with
DSEDGE_DEBUG=1) — users never see a raw traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

from rich.markup import escape

from dsedge.cli.app import app, console, err_console
from dsedge.errors import DsedgeError

# Command modules, in the order of the pipeline. Each one adds its commands to `app`.
COMMAND_MODULES = (
    "data_cmd",
    "models_cmd",
    "train_cmd",
    "eval_cmd",
    "export_cmd",
    "calibrate_cmd",
    "risk_cmd",
    "build_cmd",
    "predict_cmd",
    "bench_cmd",
    "doctor_cmd",
    "triton_cmd",
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"dsedge.cli.{_name}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    typer/click runs in standalone mode (it prints usage errors and exits 2 itself);
    our own errors propagate out of it and are rendered here.
    """
    try:
        app(args=argv, prog_name="dsedge")
    except SystemExit:
        raise
    except DsedgeError as e:
        # escape(): messages carry literal brackets, e.g. "pip install 'dsedge[tensorrt]'"
        err_console.print(f"[bold red]error:[/] {escape(e.message)}", highlight=False)
        if e.hint:
            err_console.print(f"[yellow]hint:[/] {escape(e.hint)}", highlight=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - last line of defence against raw tracebacks
        if os.environ.get("DSEDGE_DEBUG"):
            raise
        err_console.print(f"[bold red]internal error:[/] {type(e).__name__}: {e}", highlight=False)
        err_console.print("[dim]re-run with DSEDGE_DEBUG=1 for the full traceback[/]")
        sys.exit(3)


__all__ = ["app", "console", "main"]
