"""`dsedge train`: the paper's recipe with every TrainConfig field as a flag or a TOML key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dsedge import SIMAM_LAMBDA
from dsedge.cli.app import app, err_console


def _alpha(value: str | None) -> list[float] | None:
    if value is None:
        return None
    from dsedge.errors import DsedgeError

    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise DsedgeError(f"--focal-alpha must be comma-separated numbers, got '{value}'",
                          hint="one alpha per class in class order, e.g. --focal-alpha 0.4,0.2,0.4") from None


COMPILE_SCOPES = ("auto", "model", "simam")


def check_compile_scope(option: str | None, extra: dict[str, Any]) -> None:
    """Refuse an unknown --compile-scope (or TOML extra.compile_scope) before it is stored in the run's config."""
    from dsedge.errors import DsedgeError

    for value, where in ((option, "--compile-scope"), (extra.get("compile_scope"), "extra.compile_scope")):
        if value is not None and value not in COMPILE_SCOPES:
            raise DsedgeError(f"invalid {where} = {value!r}", hint=f"use one of: {', '.join(COMPILE_SCOPES)}")


@app.command("train")
def train_command(
    data: Path | None = typer.Option(None, "--data", help="Dataset: ISIC 2017 folder, ROOT/<split>/<CLASS>/ or CSV (needs train + val)."),
    config: Path | None = typer.Option(None, "--config", help="TOML file with TrainConfig keys (top level or a train table)."),
    out: Path = typer.Option(Path("runs"), "--out", help="Parent folder of the run folder."),
    name: str | None = typer.Option(None, "--name", help="Run folder name (default <model>-<time>)."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue this run folder from its last epoch."),
    model: str | None = typer.Option(None, "--model", help="Registry model (see `dsedge models`)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Max epochs (default: 100)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Per-process batch size (default: 8)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: 5e-4)."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="Default: 0."),
    optimizer: str | None = typer.Option(None, "--optimizer", help="adam | adamw | sgd (default: adam)."),
    plateau_factor: float | None = typer.Option(None, "--plateau-factor", help="ReduceLROnPlateau factor (default: 0.5)."),
    plateau_patience: int | None = typer.Option(None, "--plateau-patience", help="ReduceLROnPlateau patience (default: 7)."),
    early_stop_patience: int | None = typer.Option(None, "--early-stop-patience", help="Default: 15."),
    focal_gamma: float | None = typer.Option(None, "--focal-gamma", help="Default: 2."),
    focal_alpha: str | None = typer.Option(None, "--focal-alpha", help="Per-class alphas 'a,b,c' (default: uniform; --balance decides the class mix)."),
    balance: str | None = typer.Option(None, "--balance", help="sampler (each class equally often) | sqrt (class ~ sqrt(count)) | offline (augmented copies, the paper's) | none (default: sampler)."),
    extra_train: list[Path] | None = typer.Option(None, "--extra-train", help="More training data (folder or path,label CSV with a train split), e.g. HAM10000's labels.csv; repeatable. Validation stays on --data."),
    init_from: Path | None = typer.Option(None, "--init-from", help="Start from this dsedge checkpoint (e.g. 7-class pretraining); a head of another shape is re-initialised."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="plateau (the paper's ReduceLROnPlateau) | cosine (per step, after --warmup-epochs) (default: plateau)."),
    warmup_epochs: float | None = typer.Option(None, "--warmup-epochs", help="Linear LR warmup for --scheduler cosine (default: 0)."),
    ema_decay: float | None = typer.Option(None, "--ema", help="Evaluate and checkpoint an exponential moving average of the weights with this decay, e.g. 0.998 (default: off)."),
    ema_bn_batches: int | None = typer.Option(None, "--ema-bn-batches", help="Training batches that re-estimate the EMA's BatchNorm statistics before each evaluation (default: 50)."),
    tuning_fraction: float | None = typer.Option(None, "--tuning-fraction", help="Stratified share of the --data train split held out to select epochs; val then only reports (default: 0.2; 0: off, val selects)."),
    grad_clip: float | None = typer.Option(None, "--grad-clip", help="Clip the global gradient norm (default: off)."),
    image_size: int | None = typer.Option(None, "--image-size", help="Crop size (default: 224); resize = size*256/224."),
    simam_lambda: float | None = typer.Option(None, "--simam-lambda", help=f"SimAM lambda (default: {SIMAM_LAMBDA:g})."),
    pretrained: str | None = typer.Option(None, "--pretrained", help="torchvision ResNet50 ImageNet weights file, or 'hub'."),
    seed: int | None = typer.Option(None, "--seed", help="Default: 0."),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader workers (default: 2)."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N (default: auto)."),
    amp: str | None = typer.Option(None, "--amp", help="auto | bf16 | fp16 | off (default: auto)."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last", help="Default: on."),
    compile_: bool | None = typer.Option(None, "--compile/--no-compile", help="torch.compile the training forward (default: on)."),
    compile_scope: str | None = typer.Option(None, "--compile-scope", help="auto | model | simam (default: auto: model on CUDA, simam on CPU)."),
    max_train_batches: int | None = typer.Option(None, "--max-train-batches", help="Cap batches per epoch (smoke runs)."),
    max_val_batches: int | None = typer.Option(None, "--max-val-batches", help="Cap validation batches."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Rich progress bars."),
) -> None:
    """Train a model with the paper's recipe; also runs as DDP under `torchrun --nproc-per-node N`."""
    from dsedge.config import TrainConfig, load_toml, merge_into
    from dsedge.errors import DsedgeError
    from dsedge.train.loop import check_config, resume_config, train
    from dsedge.utils.io import check_output_dir

    flags: dict[str, Any] = {
        "model": model, "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "optimizer": optimizer, "plateau_factor": plateau_factor, "plateau_patience": plateau_patience,
        "early_stop_patience": early_stop_patience, "focal_gamma": focal_gamma, "focal_alpha": _alpha(focal_alpha),
        "balance": balance, "extra_train": [str(p) for p in extra_train] if extra_train else None,
        "init_from": str(init_from) if init_from else None, "scheduler": scheduler,
        "warmup_epochs": warmup_epochs, "ema_decay": ema_decay, "ema_bn_batches": ema_bn_batches,
        "tuning_fraction": tuning_fraction, "grad_clip": grad_clip, "image_size": image_size, "simam_lambda": simam_lambda, "pretrained": pretrained,
        "seed": seed, "num_workers": workers, "device": device, "amp": amp, "channels_last": channels_last,
        "compile": compile_, "max_train_batches": max_train_batches, "max_val_batches": max_val_batches,
    }
    values: dict[str, Any] = {}
    if config is not None:
        raw = load_toml(config)
        values.update(raw["train"] if isinstance(raw.get("train"), dict) else raw)
    values.update({k: v for k, v in flags.items() if v is not None})
    check_compile_scope(compile_scope, (values.get("extra") or {}) if isinstance(values.get("extra"), dict) else {})
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
