"""`dsedge train`: the paper's recipe with every TrainConfig field as a flag or a TOML key.

The flags are generated from `dsedge.config.TrainConfig` (name, type, help and the default in
the help): an option is added in one place, and `--help` cannot drift from the defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from dsedge.cli.app import app, err_console
from dsedge.config import COMPILE_SCOPES, OptionSpec, train_options
from dsedge.errors import DsedgeError


def _alpha(value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise DsedgeError(f"--focal-alpha must be comma-separated numbers, got '{value}'",
                          hint="one alpha per class in class order, e.g. --focal-alpha 0.4,0.2,0.4") from None


def _paths(values: list[Path] | None) -> list[str] | None:
    return [str(p) for p in values] if values else None


def _path(value: Path | None) -> str | None:
    return str(value) if value is not None else None


#: Fields whose command-line form differs from their type: (what the flag parses, how it becomes the value).
CLI_FORMS: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "focal_alpha": (str, _alpha),
    "extra_train": (list[Path], _paths),
    "init_from": (Path, _path),
}


def check_compile_scope(option: str | None) -> None:
    """Refuse an unknown --compile-scope by its flag name (the schema checks TOML's extra.compile_scope)."""
    if option is not None and option not in COMPILE_SCOPES:
        raise DsedgeError(f"invalid --compile-scope = {option!r}", hint=f"use one of: {', '.join(COMPILE_SCOPES)}")


def _option(spec: OptionSpec) -> inspect.Parameter:
    """The typer parameter of one TrainConfig field: None by default, so only given flags override TOML."""
    cli_type = CLI_FORMS.get(spec.name, (spec.type, None))[0]
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, annotation=cli_type | None,
                             default=typer.Option(None, spec.flag,
                                                  help=spec.help_with_default))


def _flag_values(options: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig values the user gave as flags, converted to the field's type."""
    values = {}
    for name, value in options.items():
        convert = CLI_FORMS.get(name, (None, None))[1]
        value = convert(value) if convert else value
        if value is not None:
            values[name] = value
    return values


def train_command(
    data: Path | None = typer.Option(None, "--data", help="Dataset: ISIC 2017 folder, ROOT/<split>/<CLASS>/ or CSV (needs train + val)."),
    config: Path | None = typer.Option(None, "--config", help="TOML file with TrainConfig keys (top level or a train table)."),
    out: Path = typer.Option(Path("runs"), "--out", help="Parent folder of the run folder."),
    name: str | None = typer.Option(None, "--name", help="Run folder name (default <model>-<time>)."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue this run folder from its last epoch."),
    compile_scope: str | None = typer.Option(None, "--compile-scope", help="What --compile compiles: auto | model | simam (default: auto: model on CUDA, simam on CPU)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Rich progress bars."),
    **options: Any,
) -> None:
    """Train a model with the paper's recipe; also runs as DDP under `torchrun --nproc-per-node N`."""
    from dsedge.config import TrainConfig, load_toml, merge_into
    from dsedge.train.loop import check_config, resume_config, train
    from dsedge.utils.io import check_output_dir

    values: dict[str, Any] = {}
    if config is not None:
        raw = load_toml(config)
        values.update(raw["train"] if isinstance(raw.get("train"), dict) else raw)
    values.update(_flag_values(options))
    check_compile_scope(compile_scope)
    if compile_scope is not None:
        extra = values.get("extra", {})
        values["extra"] = {**(extra if isinstance(extra, dict) else {}), "compile_scope": compile_scope}
    source = f"config {config} or option" if config else "option"
    if resume is not None:
        cfg = resume_config(resume, values)
    else:
        if data is None:
            raise DsedgeError("missing --data", hint="dsedge train --data DIR (or --resume RUN)")
        cfg = merge_into(TrainConfig(), values, source=f"config ({config})" if config else "option")
        check_output_dir(out, "run parent")
    check_config(cfg, source)
    run_dir = train(cfg, data, out, resume=resume, run_name=name, show_progress=progress, console=err_console)
    err_console.print(f"[green]run folder:[/] {run_dir}", highlight=False)


def _generated_signature() -> inspect.Signature:
    """train_command's own options, with one option per TrainConfig field in place of `**options`."""
    own = [p for p in inspect.signature(train_command).parameters.values() if p.kind != p.VAR_KEYWORD]
    fields = [_option(s) for s in train_options() if s.cli]
    at = next(i for i, p in enumerate(own) if p.name == "compile_scope")
    params = own[:at] + fields + own[at:]
    return inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])


train_command.__signature__ = _generated_signature()  # type: ignore[attr-defined]
app.command("train")(train_command)
