"""Learning-rate schedules and weight averaging for `train()`.

The paper's schedule is ReduceLROnPlateau on the validation loss. On a small CPU
budget (a dozen epochs) a plateau schedule rarely gets to lower the rate at all,
so the reference recipe uses a per-step cosine decay after a linear warmup, and
evaluates an exponential moving average (EMA) of the weights: with 150
validation images, epoch-to-epoch noise in the raw weights is larger than the
gains of the last epochs, and the EMA smooths it without extra compute.

BatchNorm and the EMA: the EMA averages the *parameters* only; its BatchNorm statistics are
re-estimated for the averaged weights before every evaluation (`recompute_bn`), on a bounded
number of training batches. Averaging the running mean / variance alongside the weights (what
this recipe did, `use_buffers=True`) is wrong early in a short run: with decay 0.998 the average
is still mostly the initial statistics (mean 0, variance 1) of weights that no longer exist, and
statistics are not linear in the weights anyway (averaged weights give activations of another
scale than the average of the raw models' statistics). MobileNetV2 under that EMA output a
constant (its ReLU6 saturated). Re-estimating costs `ema_bn_batches` forward passes per epoch
(50 batches, ~7 % of a 112 px epoch on ISIC 2017 + HAM10000) and is exact for the weights that are
evaluated and shipped, which is what SWA does (`torch.optim.swa_utils.update_bn`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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
    """An EMA copy of `model`'s parameters, or None when `decay` is None.

    Its BatchNorm buffers are not averaged: call `recompute_bn` before evaluating it.
    """
    if decay is None:
        return None
    if not 0.0 < decay < 1.0:
        raise DsedgeError(f"ema_decay must be in (0, 1), got {decay}", hint="e.g. 0.998")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm's running statistics of `model` on `batches`; returns how many were used.

    `torch.optim.swa_utils.update_bn`: statistics reset, then a cumulative average over the
    batches (train-mode forwards, no gradients). The caller bounds the batches and sets the
    autocast / device context. With no batch at all the statistics are left unchanged.
    """
    from itertools import chain

    from torch.optim.swa_utils import update_bn

    it = iter(batches)
    first = next(it, None)
    if first is None:
        return 0
    used = 0

    def counted() -> Iterable[torch.Tensor]:  # streamed: 50 batches at 224 px would be ~1 GB held at once
        nonlocal used
        for batch in chain([first], it):
            used += 1
            yield batch

    update_bn(counted(), model)
    return used
