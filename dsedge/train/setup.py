"""Everything `train()` resolves before the first step: the run folder, the data, the model and optimizer.

A start that fails before its first epoch leaves no config-only run folder behind
(`discard_unstarted`); a new start with the same name reuses what `unstarted` allows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from dsedge.config import PreprocessConfig, TrainConfig
from dsedge.data.samples import DatasetSplit
from dsedge.errors import CheckpointError, DsedgeError
from dsedge.train import distributed as D
from dsedge.train.loaders import check_splits, load_splits
from dsedge.train.loss import check_alpha
from dsedge.train.options import (
    CONFIG_FILE,
    LEGACY_DEFAULTS,
    RESUME_LOCKED,
    check_config,
    resolve_amp,
)
from dsedge.train.state import STATE_DIR, TRAINER_FILE, recover


@dataclass
class Setup:
    """Everything `train()` resolves before the first step."""

    cfg: TrainConfig
    ctx: D.DistContext
    run_dir: Path
    data: Path
    train_split: DatasetSplit
    val_split: DatasetSplit
    preprocess: PreprocessConfig
    model_kwargs: dict[str, Any]
    alpha: list[float]
    amp_dtype: torch.dtype | None
    channels_last: bool
    created: tuple[Path, ...] = ()  # folders this start created (removed again if it fails)
    float32_convs: int = 0  # grouped dilated convs kept in float32 under CPU bf16 (`dsedge.train.bf16`)
    tuning_split: DatasetSplit | None = None  # held out of train: selects epochs (None: val does, in-sample)
    tuning_record: dict[str, Any] | None = None  # `dsedge.data.splits.hold_out`'s record, in every checkpoint
    init_excludes_tuning: bool | None = None  # `init_excludes_tuning()`: did --init-from never see the slice?


#: What a run folder holds before its first epoch is committed (reused by a new start).
UNSTARTED_ENTRIES = {CONFIG_FILE, "balanced", STATE_DIR}


def unstarted(run_dir: Path) -> bool:
    """A run folder left by a start that failed before its first epoch: config.json, balanced/ at most."""
    if (run_dir / STATE_DIR / TRAINER_FILE).exists():
        return False
    return all(p.name in UNSTARTED_ENTRIES or (p.name.startswith(".") and p.name.endswith(".tmp"))
               for p in run_dir.iterdir())


def discard_unstarted(run_dir: Path, created: tuple[Path, ...] = ()) -> None:
    """After a failed start, remove the config.json it wrote and the empty folders it created.

    balanced/ (offline-balanced copies) is kept: a new start with the same name reuses it.
    """
    if run_dir.is_dir() and unstarted(run_dir):
        (run_dir / CONFIG_FILE).unlink(missing_ok=True)
        state = run_dir / STATE_DIR
        if state.is_dir():
            recover(run_dir)
            if not any(state.iterdir()):
                state.rmdir()
        for folder in created:  # deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def prepare(cfg: TrainConfig, data: Path | None, out_dir: Path | None, resume: Path | None,
            run_name: str | None, ctx: D.DistContext) -> Setup:
    check_config(cfg)
    if resume is not None:
        run_dir = Path(resume)
        stored = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8")) if (run_dir / CONFIG_FILE).is_file() else None
        if stored is None:
            raise CheckpointError(f"{run_dir} is not a dsedge run folder (no {CONFIG_FILE})",
                                  hint="--resume takes a run folder written by `dsedge train` (e.g. runs/<name>)")
        for k in RESUME_LOCKED:
            if stored["train"].get(k, LEGACY_DEFAULTS.get(k)) != getattr(cfg, k):
                raise DsedgeError(f"cannot resume {run_dir}: its {k} is {stored['train'].get(k)!r}, "
                                  f"this config has {getattr(cfg, k)!r}", hint="use resume_config() / --resume RUN alone")
        data = Path(data) if data is not None else Path(stored["data"])
        check_splits(data)
    else:
        if data is None:
            raise DsedgeError("no training data given", hint="dsedge train --data DIR")
        check_splits(Path(data))
        stamp = D.broadcast_int(ctx, int(time.time()))
        name = run_name or f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(stamp))}"
        run_dir = Path(out_dir or "runs") / name
        if run_dir.exists() and not run_dir.is_dir():
            raise DsedgeError(f"run folder {run_dir} is a file", hint="pick another --name or --out")
        if run_dir.exists() and not unstarted(run_dir):
            raise DsedgeError(f"run folder {run_dir} already exists",
                              hint="pick another --name, or continue it with --resume")
        D.barrier(ctx)  # every rank checked before rank 0 creates it
        created = tuple(p for p in (run_dir, *run_dir.parents) if not p.exists())
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        D.barrier(ctx)
    data = Path(data)
    try:
        train_split, val_split, tuning_split, tuning_record = load_splits(cfg, data, run_dir, ctx)
        n_cls = len(train_split.classes)
        # Default alpha is uniform: class balance is the sampler's job. Inverse raw frequencies
        # on top of gamma 2 (the old default, NV 0.099) made the model never predict NV.
        alpha = check_alpha(cfg.focal_alpha, n_cls) if cfg.focal_alpha is not None else [1.0 / n_cls] * n_cls
        amp_dtype = resolve_amp(cfg.amp, ctx.device)
        excludes = init_excludes_tuning(cfg.init_from, tuning_record)
    except BaseException:
        if resume is None and ctx.is_main:
            discard_unstarted(run_dir, created)
        raise
    model_kwargs = {"simam_lambda": cfg.simam_lambda} if cfg.model == "ds_resnet50" else {}
    return Setup(cfg, ctx, run_dir, data, train_split, val_split, PreprocessConfig.for_size(cfg.image_size),
                 model_kwargs, alpha, amp_dtype, cfg.channels_last, created if resume is None else (),
                 tuning_split=tuning_split, tuning_record=tuning_record,
                 init_excludes_tuning=excludes)


def init_excludes_tuning(init_from: str | None, record: dict[str, Any] | None) -> bool | None:
    """Whether the `--init-from` checkpoint provably never trained on this run's tuning slice.

    None: no `init_from` or no slice. True: its own recorded tuning slice holds every one of
    this run's tuning images out (e.g. the 112 px stage of a FixRes fine-tune, trained with the
    same fraction and seed on the same data). False: that cannot be shown, e.g. the shipped
    `isic2017` weights, trained on all of ISIC 2017 train: the slice's numbers may be in-sample.
    """
    if not init_from or not record:
        return None
    from dsedge.models.checkpoint import read_checkpoint_meta

    theirs = read_checkpoint_meta(init_from).get("tuning_split") or {}
    return set(record["ids"]) <= set(theirs.get("ids") or [])


def build_model(s: Setup, console: Console, resuming: bool = False) -> nn.Module:
    from dsedge.models.zoo import create_model

    # on resume the weights come from the run's last checkpoint, not the ImageNet file
    pretrained = s.cfg.pretrained if s.cfg.pretrained and not resuming else None
    model = create_model(s.cfg.model, len(s.train_split.classes), pretrained=pretrained, **s.model_kwargs)
    report = getattr(model, "init_report", None)
    if report is not None and s.ctx.is_main:
        console.print(report.summary(), highlight=False)
    if s.cfg.init_from and not resuming:
        from dsedge.models.checkpoint import init_from_checkpoint

        loaded, skipped = init_from_checkpoint(model, s.cfg.init_from)
        if s.ctx.is_main:
            console.print(f"init from {s.cfg.init_from}: {loaded} tensors loaded, re-initialised: "
                          f"{', '.join(skipped) or 'none'}", highlight=False)
    model.to(s.ctx.device)
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The configured optimizer; Adam/AdamW use PyTorch's fused kernel on CPU and CUDA.

    The default (for-loop) Adam on CPU runs ~6 small ops per parameter tensor per
    step; the fused implementation does one pass, a measurable part of a CPU step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
