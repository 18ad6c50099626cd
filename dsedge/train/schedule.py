"""Learning-rate schedules and weight averaging for `train()`.

The paper's schedule is ReduceLROnPlateau on the validation loss. On a small CPU
budget (a dozen epochs) a plateau schedule rarely gets to lower the rate at all,
so the reference recipe uses a per-step cosine decay after a linear warmup, and
evaluates an exponential moving average (EMA) of the weights: with 150
validation images, epoch-to-epoch noise in the raw weights is larger than the
gains of the last epochs, and the EMA smooths it without extra compute.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dsedge.config import TrainConfig
from dsedge.errors import DsedgeError

SCHEDULERS = ("plateau", "cosine")


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> tuple[Any, bool]:
    """(scheduler, stepped per optimizer step?) for `cfg.scheduler`."""
    if cfg.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
        return sched, False
    if cfg.scheduler != "cosine":
        raise DsedgeError(f"unknown scheduler '{cfg.scheduler}'", hint=" | ".join(SCHEDULERS))
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_factor(step, total, warmup)), True


def cosine_factor(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup from ~0 to 1 over `warmup` steps, then cosine to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_ema(model: nn.Module, decay: float | None) -> torch.optim.swa_utils.AveragedModel | None:
    """An EMA copy of `model` (BatchNorm statistics averaged too), or None when `decay` is None."""
    if decay is None:
        return None
    if not 0.0 < decay < 1.0:
        raise DsedgeError(f"ema_decay must be in (0, 1), got {decay}", hint="e.g. 0.998")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
