"""The `dsedge` command line: a thin typer shell around one entry function per stage.

Each command module in this package registers its command(s) on `app` and only
parses options and calls into the pipeline (`dsedge.data`, `dsedge.train`, ...).
`main()` turns every `DsedgeError` into a red message and exit code 2, and any
other exception into a one-line "internal error" (exit 3; full traceback with
DSEDGE_DEBUG=1) — users never see a raw traceback. Exit codes: 0 done, 1 a
check failed (bench compare, doctor), 2 your input or your machine (disk full,
read-only), 3 a dsedge bug, 130 interrupted (docs/ERRORS.md).
"""

from __future__ import annotations

import errno
import importlib
import sys
import warnings

from rich.markup import escape

from dsedge.cli.app import app, console, err_console
from dsedge.errors import DsedgeError, debug_enabled
from dsedge.utils.io import is_disk_full
from dsedge.utils.logs import quiet_library_logs

# Command modules, in the order of the pipeline. Each one adds its commands to `app`.
COMMAND_MODULES = (
    "data_cmd",
    "models_cmd",
    "train_cmd",
    "eval_cmd",
    "export_cmd",
    "calibrate_cmd",
    "qat_cmd",
    "risk_cmd",
    "build_cmd",
    "predict_cmd",
    "bench_cmd",
    "doctor_cmd",
    "triton_cmd",
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"dsedge.cli.{_name}")


#: Top-level packages of the `train` extra: a runtime-only install (`pip install dsedge`) lacks them.
TRAIN_EXTRA_PACKAGES = {"torch", "torchvision", "sklearn", "matplotlib", "safetensors", "onnx", "onnxscript",
                        "onnxconverter_common"}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001, ARG001
    """Every warning as one yellow line, each text once.

    Library warnings (PIL, torch, scikit-learn) would otherwise print their file,
    line number and source line on the terminal: noise a user cannot act on.
    dsedge's own warnings are shown as they are; others get their category
    name. DSEDGE_DEBUG=1 restores Python's full format.
    """
    if debug_enabled():
        _default_showwarning(message, category, filename, lineno, file, line)
        return
    text = " ".join(str(message).split())
    if not getattr(category, "__module__", "").startswith("dsedge"):
        text = f"{category.__name__}: {text}"
    if text in _shown_warnings:
        return
    _shown_warnings.add(text)
    err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)


_shown_warnings: set[str] = set()
_default_showwarning = warnings.showwarning


def _os_error_line(e: OSError) -> tuple[str, str] | None:
    """(message, hint) for operating-system failures a user can fix; None for the rest."""
    where = e.filename or "a file"
    if e.errno in (errno.ENOSPC, errno.EDQUOT) or is_disk_full(e):
        return f"no space left on the device while writing {where}", "free disk space (or use another --out), then re-run; a training run continues with --resume"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied: {where}", "choose a folder you can write to (--out) or fix its permissions"
    if e.errno == errno.ENOTDIR:
        return f"{where}: a part of this path is a file, not a folder", "choose an output path under a folder"
    if e.errno == errno.EISDIR:
        return f"{where} is a folder, a file was expected", "pass a file path"
    return None


def _from_interrupt(e: BaseException) -> bool:
    """True when a KeyboardInterrupt is somewhere in the cause / context chain of `e`."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _interrupted() -> None:
    """Ctrl-C: say so, and what is safe now (it used to print only a blank line), then exit 130."""
    err_console.print("[yellow]interrupted:[/] stopped by Ctrl-C (SIGINT); files already written are complete, "
                      "nothing half-written was kept", highlight=False)
    err_console.print("[yellow]hint:[/] re-run the command; a training run continues with "
                      "`dsedge train --resume RUN`", highlight=False)
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    typer/click runs in standalone mode (it prints usage errors and exits 2 itself);
    our own errors propagate out of it and are rendered here.
    """
    warnings.showwarning = _show_warning
    quiet_library_logs()
    try:
        app(args=argv, prog_name="dsedge")
    except SystemExit as e:
        if _from_interrupt(e):  # typer turns Ctrl-C into a silent Exit(130)
            _interrupted()
        raise
    except DsedgeError as e:
        # escape(): messages carry literal brackets, e.g. "pip install 'dsedge[tensorrt]'"
        err_console.print(f"[bold red]error:[/] {escape(e.message)}", highlight=False)
        if e.hint:
            err_console.print(f"[yellow]hint:[/] {escape(e.hint)}", highlight=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as e:  # noqa: BLE001 - last line of defence against raw tracebacks
        if debug_enabled():
            raise
        missing = (getattr(e, "name", None) or "").split(".")[0] if isinstance(e, ModuleNotFoundError) else ""
        if missing in TRAIN_EXTRA_PACKAGES:  # a training-side command on a runtime-only install
            err_console.print(f"[bold red]error:[/] the Python package '{missing}' is not installed "
                              "(this command needs the training extra)", highlight=False)
            err_console.print("[yellow]hint:[/] pip install 'dsedge\\[train]'", highlight=False)
            sys.exit(2)
        if is_disk_full(e) and not isinstance(e, OSError):  # a library's own wrapper (safetensors, protobuf)
            e = OSError(errno.ENOSPC, str(e), None)
        if isinstance(e, OSError) and _os_error_line(e) is not None:  # disk full, read-only, path under a file
            message, hint = _os_error_line(e)
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
            err_console.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False)
            sys.exit(2)
        err_console.print(f"[bold red]internal error:[/] {type(e).__name__}: {e}", highlight=False)
        err_console.print("[dim]re-run with DSEDGE_DEBUG=1 for the full traceback[/]")
        sys.exit(3)


__all__ = ["app", "console", "main"]
