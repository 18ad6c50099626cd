"""`train()`: the paper's recipe (DESIGN §2) as one entry function, single process or under torchrun.

Adam 5e-4, batch 8, <= 100 epochs, ReduceLROnPlateau(0.5, 7), early stopping after 15
epochs without improvement, focal loss (gamma 2), the weights of the lowest selection loss
kept as best.*. Every value comes from `TrainConfig`.

Data roles (DESIGN §3a): a stratified `tuning_fraction` (default 0.2) of the --data train split
is held out (`dsedge.data.splits.hold_out`, recorded in every checkpoint as `tuning_split`) and
never trained on; its loss selects the best epoch and drives the plateau schedule and early
stopping. The val split is evaluated every epoch as the *reporting* split and only logged.
With `tuning_fraction = 0` val selects, and history.csv / the checkpoint say so.

bf16 on CPU: the grouped dilated convolutions run in float32 (`dsedge.train.bf16`: oneDNN's
bf16 weight gradient for them is wrong from ~31 px feature maps up).

Speed: DS-ResNet50's SimAM is a chain of small memory-bound ops, so by default
the training forward is compiled (`compile_scope`: the whole model on CUDA, the
fused SimAM of `dsedge.train.fused` on CPU) and runs under bf16 autocast where
the hardware has native bf16 (CUDA, CPUs with AVX512-BF16/AMX), with
channels_last activations.
Evaluation runs the uncompiled module (no recompilation for eval-mode BN).

Reproducibility: the sample order and all augmentation RNGs are re-seeded from
(seed, epoch, rank) at the start of every epoch, so an epoch's data depends on
nothing that happened before it. Together with bit-exact weights and optimizer
state (`dsedge.train.state`) that makes `--resume` reach the same weights as an
uninterrupted run (on CPU without AMP/compile, where kernels are deterministic).

Run folder: config.json, history.csv, best.* and last.* checkpoints, loss.png,
state/ (resume), balanced/ (offline balancing only).

This module is the entry and the epoch loop; the stages it runs sit beside it, one concern
each: `options` (checks, resume config, AMP / compile), `loaders` (data), `setup` (run
folder, model, optimizer), `steps` (one epoch, one prediction pass, the `Loop` state),
`commit` (per-epoch checkpoint commit, resume) and `report` (history, config.json, console).
`predict` is looked up here at call time, so a test can replace it on this module.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from torch import nn

from dsedge.config import TrainConfig
from dsedge.data.samples import DatasetSplit
from dsedge.errors import DsedgeError
from dsedge.train import distributed as D
from dsedge.train.commit import checkpoint_meta, commit_epoch, restore
from dsedge.train.loaders import data_warnings, make_loader, read_batches, seed_epoch
from dsedge.train.loss import FocalLoss
from dsedge.train.options import (
    check_config,
    compile_scope,
    resolve_amp,
    resume_config,
)
from dsedge.train.report import (
    HISTORY_FIELDS,
    announce,
    epoch_line,
    epoch_row,
    progress_bars,
    val_metrics,
    write_config,
    write_history,
)
from dsedge.train.setup import (
    Setup,
    build_optimizer,
    discard_unstarted,
    prepare,
    unstarted,
)
from dsedge.train.steps import (
    Loop,
    autocast,
    new_loop,
    predict,
    to_device,
    train_epoch,
    wrap_for_training,
)
from dsedge.utils.console import make_console

#: `train` is the one entry; the rest stay importable from here for existing callers (benchmarks, tests).
__all__ = [
    "HISTORY_FIELDS", "FocalLoss", "build_optimizer", "check_config", "compile_scope", "data_warnings", "predict",
    "resolve_amp", "resume_config", "train",
]
_unstarted = unstarted  # the name tests/test_bad_inputs.py imports


def train(
    cfg: TrainConfig,
    data: Path | None = None,
    out_dir: Path | None = None,
    resume: Path | None = None,
    run_name: str | None = None,
    show_progress: bool = True,
    console: Console | None = None,
) -> Path:
    """Train `cfg.model` on `data` (train + val splits) and return the run folder.

    The run folder is `out_dir/run_name` (default `runs/<model>-<time>`). With
    `resume` (a run folder), training continues from its `last` checkpoint and
    state; `cfg` must then agree with the stored config on `RESUME_LOCKED`
    (use `resume_config`). Under torchrun every rank calls this; rank 0 writes.
    """
    console = console or make_console(stderr=True)
    ctx = D.setup(cfg.device)
    s = None
    try:
        s = prepare(cfg, data, out_dir, Path(resume) if resume else None, run_name, ctx)
        return _run(s, console, show_progress, resume is not None)
    except BaseException:
        if resume is None and ctx.is_main:  # a failed start leaves no config-only run folder behind
            if s is not None:
                discard_unstarted(s.run_dir, s.created)
        raise
    finally:
        D.cleanup(ctx)


def _run(s: Setup, console: Console, show_progress: bool, resuming: bool) -> Path:
    """Set up (or restore) the training state, then run the epochs; returns the run folder."""
    cfg, ctx = s.cfg, s.ctx
    loop = new_loop(s, console, resuming)
    if resuming:
        restore(s, loop, console)
    step_model, eval_model, scope = wrap_for_training(s, loop)
    if ctx.is_main:
        write_config(s)
        announce(s, console, scope)
    _run_epochs(s, loop, console, show_progress, step_model, eval_model)
    if ctx.is_main and loop.history and loop.bad_epochs >= cfg.early_stop_patience:
        console.print(f"early stop: no val-loss improvement for {loop.bad_epochs} epochs", highlight=False)
    return s.run_dir


def _run_epochs(s: Setup, loop: Loop, console: Console, show_progress: bool,
                step_model: nn.Module, eval_model: nn.Module) -> None:
    """Epochs from `loop.start_epoch` to `cfg.epochs`, until early stopping; each one seeded and committed.

    The tuning slice (when there is one) selects: best epoch, plateau schedule, early stopping.
    The val split is evaluated as the *reporting* split and only logged; without a tuning
    slice (`tuning_fraction = 0`) it selects too, and the history says so (`selected_on`).
    """
    from dsedge.data.transforms import eval_transform, train_transform

    cfg, ctx = s.cfg, s.ctx
    t_train, t_eval = train_transform(s.preprocess), eval_transform(s.preprocess)
    splits = {"tuning": s.tuning_split, "reporting": s.val_split}
    with progress_bars(s, console, show_progress) as progress:
        for epoch in range(loop.start_epoch, cfg.epochs + 1):
            if loop.bad_epochs >= cfg.early_stop_patience:
                break
            t0 = time.perf_counter()
            gen_seed = seed_epoch(cfg.seed, epoch, ctx.rank)
            loss_sum, seen, t_epoch = _train_pass(s, loop, step_model, t_train, progress, epoch, gen_seed, t0)
            _refresh_ema_bn(s, loop, t_train, epoch, gen_seed)
            results = {role: _evaluate(s, loop, eval_model, split, t_eval, epoch, gen_seed)
                       for role, split in splits.items() if split is not None}
            lr = loop.optimizer.param_groups[0]["lr"]
            row = epoch_row(s, epoch, loss_sum / max(seen, 1), results, lr)
            improved = loop.end_epoch(results[row["selected_on"]][0])
            row.update(seconds=time.perf_counter() - t0, train_img_per_s=seen / max(t_epoch, 1e-9))
            loop.history.append(row)
            if ctx.is_main:
                _record_epoch(s, loop, console, eval_model, row, results, improved)
            D.barrier(ctx)


def _train_pass(s: Setup, loop: Loop, step_model: nn.Module, transform: Any, progress: Any,
                epoch: int, gen_seed: int, t0: float) -> tuple[float, int, float]:
    """One epoch of training; (loss sum, samples, seconds since `t0`), loss and samples summed over ranks."""
    cfg, ctx = s.cfg, s.ctx
    loop.train_sampler.set_epoch(epoch)
    loader = make_loader(s.train_split, transform, loop.train_sampler, cfg, ctx.device, gen_seed, cfg.batch_size,
                         True)
    n_batches = len(loader) if cfg.max_train_batches is None else min(len(loader), cfg.max_train_batches)
    task = progress.add_task(f"epoch {epoch}/{cfg.epochs}", total=n_batches, loss="-", speed="-")
    loss_sum, seen = train_epoch(s, step_model, loop.criterion, loop.optimizer, loop.scaler, loader, progress, task,
                                 loop.after_step, epoch)
    t_epoch = time.perf_counter() - t0
    loss_sum, seen = D.all_reduce_sum(ctx, [loss_sum, seen])
    progress.remove_task(task)
    return loss_sum, seen, t_epoch


def _evaluate(s: Setup, loop: Loop, eval_model: nn.Module, split: DatasetSplit, transform: Any,
              epoch: int, gen_seed: int) -> tuple[float, dict[str, Any]]:
    """(loss, metrics) of `eval_model` on `split`; non-finite outputs stop training before they reach a checkpoint."""
    cfg, ctx = s.cfg, s.ctx
    sampler = D.ShardedSampler(split.labels, ctx.rank, ctx.world_size, shuffle=False, pad=False)
    loader = make_loader(split, transform, sampler, cfg, ctx.device, gen_seed, cfg.batch_size * 2)
    loss, labels, probs = predict(s, eval_model, loop.criterion, loader, cfg.max_val_batches)
    if not np.isfinite(probs).all():
        raise DsedgeError(f"training diverged at epoch {epoch}: {split.name} outputs are not finite",
                          hint="lower --lr, set --grad-clip, or try --amp off; --resume continues "
                          "from the last good epoch")
    return loss, {"loss": loss, **val_metrics(labels, probs, s.train_split.classes)}


def _refresh_ema_bn(s: Setup, loop: Loop, transform: Any, epoch: int, gen_seed: int) -> None:
    """Re-estimate the EMA's BatchNorm statistics on `ema_bn_batches` training batches (DESIGN §4).

    Every rank draws the same batches (an unsharded sampler with the run's seed and epoch), so
    every rank evaluates the same model; the forwards run under the training autocast.
    """
    if loop.ema is None:
        return
    from itertools import islice

    from dsedge.train.schedule import recompute_bn

    cfg = s.cfg
    sampler = D.ShardedSampler(s.train_split.labels, 0, 1, cfg.seed, balanced=cfg.balance in ("sampler", "sqrt"),
                               balance_power=0.5 if cfg.balance == "sqrt" else 1.0)
    sampler.set_epoch(epoch)
    loader = make_loader(s.train_split, transform, sampler, cfg, s.ctx.device, gen_seed, cfg.batch_size, True)
    batches = (to_device(s, x, y)[0] for x, y in islice(read_batches(loader), cfg.ema_bn_batches))
    with autocast(s):
        recompute_bn(loop.ema.module, batches)


def _record_epoch(s: Setup, loop: Loop, console: Console, eval_model: nn.Module, row: dict[str, Any],
                  results: dict[str, tuple[float, dict[str, Any]]], improved: bool) -> None:
    """Rank 0 after each epoch: commit its checkpoints and state, history.csv, loss.png, one console line."""
    from dsedge.train.plots import plot_history

    epoch = row["epoch"]
    meta = checkpoint_meta(s, epoch, results)
    commit_epoch(s, epoch, meta, loop.model if loop.ema is not None else None, eval_model, improved,
                 loop.optimizer, loop.trainer_state(epoch))
    write_history(s.run_dir, loop.history)
    plot_history(loop.history, s.run_dir / "loss.png", title=s.cfg.model)
    console.print(epoch_line(row, improved), highlight=False)
