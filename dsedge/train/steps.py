"""One training epoch, one prediction pass, and the state the epoch loop steps on (`Loop`).

`train_epoch` stops at a non-finite loss before broken weights reach a checkpoint;
`wrap_for_training` adds the fused SimAM, the bf16 guard, the EMA, DDP and `torch.compile`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader

from dsedge.errors import DsedgeError
from dsedge.train import distributed as D
from dsedge.train.bf16 import guard_bf16_convs
from dsedge.train.fused import fuse_simam_for_training
from dsedge.train.loaders import read_batches, seed_epoch
from dsedge.train.loss import FocalLoss, focal_loss
from dsedge.train.options import compile_scope
from dsedge.train.schedule import build_ema, build_scheduler
from dsedge.train.setup import Setup, build_model, build_optimizer


def autocast(s: Setup) -> Any:
    return torch.autocast(s.ctx.device.type, dtype=s.amp_dtype or torch.float32, enabled=s.amp_dtype is not None)


def to_device(s: Setup, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.to(s.ctx.device, non_blocking=True)
    if s.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(s.ctx.device, non_blocking=True)


def train_epoch(s: Setup, step_model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler | None, loader: DataLoader, progress: Any, task: Any,
                after_step: Any = None, epoch: int = 0) -> tuple[float, int]:
    """One pass over `loader`; returns (loss sum over samples, number of samples) for this rank.

    `after_step()` runs after every optimizer step (per-step LR schedule, EMA update).
    A non-finite loss stops training at once with the epoch and step, before the
    broken weights reach a checkpoint.
    """
    step_model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=s.ctx.device)
    seen = 0
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(read_batches(loader)):
        if s.cfg.max_train_batches is not None and i >= s.cfg.max_train_batches:
            break
        x, y = to_device(s, x, y)
        with autocast(s):
            logits = step_model(x)
        loss = criterion(logits, y)
        if not torch.isfinite(loss):
            raise DsedgeError(f"training diverged at epoch {epoch}, step {i + 1}: loss is {loss.item()}",
                              hint="lower --lr, set --grad-clip, or try --amp off; the last good epoch "
                              "is still in the run folder (--resume continues from it)")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if s.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(step_model.parameters(), s.cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if after_step is not None:
            after_step()
        loss_sum += loss.detach().double() * len(y)
        seen += len(y)
        if progress is not None and (i % 5 == 0 or i + 1 == len(loader)):
            dt = time.perf_counter() - t0
            progress.update(task, completed=i + 1, loss=f"{loss_sum.item() / seen:.4f}",
                            speed=f"{seen * s.ctx.world_size / max(dt, 1e-9):.1f}")
    return float(loss_sum.item()), seen


@torch.no_grad()
def predict(s: Setup, model: nn.Module, criterion: FocalLoss, loader: DataLoader,
            max_batches: int | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Validation pass on every rank's shard, gathered: (mean loss, labels, probabilities)."""
    model.eval()
    rows = []
    for i, (x, y) in enumerate(read_batches(loader)):
        if max_batches is not None and i >= max_batches:
            break
        x, y = to_device(s, x, y)
        with autocast(s):
            logits = model(x)
        logits = logits.float()
        losses = focal_loss(logits, y, criterion.alpha, criterion.gamma, reduction="none")
        probs = torch.softmax(logits, dim=1)
        rows.append(torch.cat([y.double().unsqueeze(1), losses.double().unsqueeze(1), probs.double()], 1).cpu())
    local = torch.cat(rows) if rows else torch.zeros((0, 2 + len(s.train_split.classes)), dtype=torch.float64)
    allrows = D.all_gather_rows(s.ctx, local).numpy()
    mean_loss = float(allrows[:, 1].mean()) if len(allrows) else math.nan
    return mean_loss, allrows[:, 0].astype(np.int64), allrows[:, 2:]


@dataclass
class Loop:
    """What the epoch loop steps on and what it keeps between epochs (the part `--resume` restores)."""

    model: nn.Module
    criterion: FocalLoss
    optimizer: torch.optim.Optimizer
    scheduler: Any
    per_step: bool  # the scheduler steps after every optimizer step (cosine), not per epoch (plateau)
    scaler: torch.amp.GradScaler | None
    train_sampler: D.ShardedSampler
    ema: torch.optim.swa_utils.AveragedModel | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_loss: float = math.inf
    bad_epochs: int = 0
    start_epoch: int = 1

    def after_step(self) -> None:
        """Per optimizer step: the per-step LR schedule and the EMA update."""
        if self.per_step:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def end_epoch(self, selection_loss: float) -> bool:
        """Per epoch: the plateau schedule and early stopping on the selection split's loss; True when it improved."""
        if not self.per_step:
            self.scheduler.step(selection_loss)
        improved = selection_loss < self.best_loss
        self.best_loss, self.bad_epochs = ((selection_loss, 0) if improved
                                           else (self.best_loss, self.bad_epochs + 1))
        return improved

    def trainer_state(self, epoch: int) -> dict[str, Any]:
        """The resume state saved with each epoch (`state/trainer.json`)."""
        return {
            "epoch": epoch, "best_loss": self.best_loss, "bad_epochs": self.bad_epochs,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None, "history": self.history,
        }


def new_loop(s: Setup, console: Console, resuming: bool) -> Loop:
    """Model, loss, optimizer, sampler and schedule of a fresh start (a resume then loads their state)."""
    cfg, ctx = s.cfg, s.ctx
    seed_epoch(cfg.seed, 0, 0)  # same initial weights on every rank and in every run with this seed
    model = build_model(s, console, resuming)
    criterion = FocalLoss(s.alpha, cfg.focal_gamma).to(ctx.device)
    optimizer = build_optimizer(cfg, model)
    train_sampler = D.ShardedSampler(s.train_split.labels, ctx.rank, ctx.world_size, cfg.seed,
                                     balanced=cfg.balance in ("sampler", "sqrt"),
                                     balance_power=0.5 if cfg.balance == "sqrt" else 1.0)
    steps_per_epoch = max(1, len(train_sampler) // cfg.batch_size)
    if cfg.max_train_batches is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_train_batches)
    scheduler, per_step = build_scheduler(cfg, optimizer, steps_per_epoch)
    scaler = torch.amp.GradScaler(ctx.device.type) if s.amp_dtype == torch.float16 else None
    return Loop(model, criterion, optimizer, scheduler, per_step, scaler, train_sampler)


def wrap_for_training(s: Setup, loop: Loop) -> tuple[nn.Module, nn.Module, str]:
    """(model the optimizer steps through, model validated and saved, compile scope).

    SimAM is fused (CPU compile) in the EMA copy too, and the EMA is built after
    fusing so both run the same modules; the step model adds DDP and a
    whole-model `torch.compile` where they apply, while evaluation and
    checkpoints use the plain module (no recompilation for eval-mode BN).
    """
    cfg, ctx = s.cfg, s.ctx
    scope = compile_scope(cfg, ctx.device)
    if scope == "simam":
        fuse_simam_for_training(loop.model)
    if ctx.device.type == "cpu" and s.amp_dtype == torch.bfloat16:  # oneDNN's bf16 weight gradient is wrong
        s.float32_convs = guard_bf16_convs(loop.model)
    if loop.ema is None:
        loop.ema = build_ema(loop.model, cfg.ema_decay)
    elif scope == "simam":
        fuse_simam_for_training(loop.ema.module)
    eval_model = loop.ema.module if loop.ema is not None else loop.model
    step_model: nn.Module = loop.model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        step_model = DDP(loop.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    if scope == "model":
        step_model = torch.compile(step_model)
    return step_model, eval_model, scope
