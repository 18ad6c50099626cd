"""What a training config means before anything runs: checks, the resume config, AMP and compile resolution.

Torch is needed only to resolve devices; nothing here reads data or writes files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from dsedge.config import COMPILE_SCOPES, TrainConfig, check_train_config, merge_into
from dsedge.errors import CheckpointError, DsedgeError

#: Config fields that define *what* is trained: a resumed run may not change them.
RESUME_LOCKED = (
    "model", "batch_size", "lr", "weight_decay", "optimizer", "plateau_factor", "plateau_patience",
    "focal_gamma", "focal_alpha", "balance", "image_size", "simam_lambda", "seed",
    "extra_train", "scheduler", "warmup_epochs", "ema_decay", "grad_clip", "tuning_fraction",
)


#: Values of config fields that runs written before the field existed were trained with.
LEGACY_DEFAULTS = {"tuning_fraction": 0.0}


CONFIG_FILE = "config.json"


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """'auto' -> bf16 on CUDA GPUs that have it (else fp16) and on CPUs with native bf16, else off."""
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise DsedgeError(f"unknown amp mode '{amp}'", hint="auto, bf16, fp16 or off")
    if amp == "off":
        return None
    if device.type == "cuda":
        if amp == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type == "cpu":
        if amp == "fp16":
            raise DsedgeError("fp16 autocast is for GPUs", hint="use --amp bf16 or --amp off on CPU")
        native = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        if amp == "auto":
            return torch.bfloat16 if native else None
        return torch.bfloat16
    return None if amp == "auto" else (torch.bfloat16 if amp == "bf16" else torch.float16)


def compile_scope(cfg: TrainConfig, device: torch.device) -> str:
    """What `--compile` compiles: 'model' (whole training forward), 'simam' (fused SimAM only) or 'off'.

    `cfg.extra["compile_scope"]` (auto | model | simam) picks it; auto compiles the whole
    model on CUDA and only SimAM on CPU, where inductor needs many minutes for the full
    DS-ResNet50 graph on small machines (see `dsedge.train.fused`).
    """
    if not cfg.compile:
        return "off"
    scope = str(cfg.extra.get("compile_scope", "auto"))
    if scope not in COMPILE_SCOPES:
        raise DsedgeError(f"unknown compile scope '{scope}'", hint=f"use one of: {', '.join(COMPILE_SCOPES)}")
    if scope == "auto":
        return "model" if device.type == "cuda" else "simam"
    return scope


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config a run was started with, plus `overrides` (e.g. more epochs, another device).

    Overrides of fields in `RESUME_LOCKED` that differ from the stored value are an error.
    """
    run = Path(run_dir)
    path = run / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run} is not a dsedge run folder (no {CONFIG_FILE})",
                              hint="--resume takes a run folder written by `dsedge train` (e.g. runs/<name>)")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))["train"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt: {e}", hint="restore config.json of the run; "
                              "dsedge writes it atomically, so it was edited by hand") from e
    stored = {**LEGACY_DEFAULTS, **stored}
    cfg = TrainConfig(**{k: v for k, v in stored.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    overrides = dict(overrides or {})
    clash = [k for k in RESUME_LOCKED if k in overrides and overrides[k] != getattr(cfg, k)]
    if clash:
        raise DsedgeError(
            f"cannot change {', '.join(clash)} when resuming {run}",
            hint="start a new run instead; on resume you may change e.g. --epochs, --device, --workers",
        )
    return merge_into(cfg, overrides)  # an unknown key is a clear error, not a TypeError


def check_config(cfg: TrainConfig, source: str = "config") -> None:
    """Named checks for the common mistakes, then the full schema (types, ranges, NaN/inf)."""
    try:
        _check_named(cfg)
    except TypeError:
        pass  # a wrongly typed value: the schema below names it
    except DsedgeError as e:
        e.hint = e.hint or "`dsedge train --help` lists every option with its default"
        raise
    check_train_config(cfg, source)


def _check_named(cfg: TrainConfig) -> None:
    if cfg.ema_decay is not None and not 0.0 < cfg.ema_decay < 1.0:
        raise DsedgeError(f"ema_decay must be in (0, 1), got {cfg.ema_decay}", hint="e.g. --ema 0.998")
    for name in ("epochs", "batch_size", "image_size"):
        if getattr(cfg, name) <= 0:
            raise DsedgeError(f"{name} must be > 0, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise DsedgeError(f"lr must be > 0, got {cfg.lr}")
    if cfg.balance not in ("offline", "sampler", "sqrt", "none"):
        raise DsedgeError(f"unknown balance mode '{cfg.balance}'", hint="offline, sampler, sqrt or none")
    if cfg.scheduler not in ("plateau", "cosine"):
        raise DsedgeError(f"unknown scheduler '{cfg.scheduler}'", hint="plateau or cosine")
    if cfg.grad_clip is not None and not cfg.grad_clip > 0:
        raise DsedgeError(f"grad_clip must be > 0, got {cfg.grad_clip}")
    if cfg.optimizer not in ("adam", "adamw", "sgd"):
        raise DsedgeError(f"unknown optimizer '{cfg.optimizer}'", hint="adam, adamw or sgd")
    if cfg.image_size < 32:
        raise DsedgeError(f"image_size {cfg.image_size} is too small (DS-ResNet50 downsamples 32x)")
