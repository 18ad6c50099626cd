"""Checkpoints of an epoch as one commit, and `--resume` from the last committed epoch.

A kill or a full disk at any point leaves the run at the previous epoch or at this one
(`dsedge.train.state.EpochCommit`); a resume checks the files and the data first.
"""

from __future__ import annotations

from typing import Any

import torch
from rich.console import Console
from torch import nn

from dsedge.errors import DsedgeError
from dsedge.train.report import write_history
from dsedge.train.schedule import build_ema
from dsedge.train.setup import Setup
from dsedge.train.state import (
    TRAINER_FILE,
    EpochCommit,
    check_parts,
    load_state,
    match_param_layout,
    recover,
    save_optimizer,
)
from dsedge.train.steps import Loop
from dsedge.utils.io import atomic_write_json, is_disk_full


def checkpoint_meta(s: Setup, epoch: int, results: dict[str, tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    """What a checkpoint records: how to rebuild the model, the data (fingerprints, the tuning slice) and metrics.

    `metrics` are the val (reporting) split's, `tuning_metrics` the tuning slice's (None without
    one); `selected_on` names the split that picked this epoch ("val" means in-sample).
    """
    reporting = results["reporting"][1]
    tuning = results["tuning"][1] if "tuning" in results else None
    return {
        "model": s.cfg.model,
        "classes": list(s.train_split.classes),
        "model_kwargs": s.model_kwargs,
        "simam_lambda": s.cfg.simam_lambda if s.cfg.model == "ds_resnet50" else None,
        "input_size": s.cfg.image_size,
        "preprocessing": s.preprocess.to_dict(),
        "config": s.cfg.to_dict(),
        "data_fingerprint": s.train_split.fingerprint(),
        "val_fingerprint": s.val_split.fingerprint(),
        "focal_alpha": s.alpha,
        "epoch": epoch,
        "metrics": {"split": s.val_split.name, "role": "reporting", **reporting},
        "tuning_metrics": None if tuning is None else {"split": "tuning", "role": "tuning", **tuning},
        "selected_on": "tuning" if tuning is not None else s.val_split.name,
        "tuning_split": s.tuning_record,
        "init_excludes_tuning": s.init_excludes_tuning,
    }


def commit_epoch(s: Setup, epoch: int, meta: dict[str, Any], raw_model: nn.Module | None,
                 eval_model: nn.Module, improved: bool, optimizer: torch.optim.Optimizer,
                 trainer: dict[str, Any]) -> None:
    """Save every file of the epoch as one commit (`dsedge.train.state.EpochCommit`).

    A kill or a full disk at any point leaves the run at the previous epoch or at
    this one; `--resume` then continues without a sha mismatch and without
    training an epoch twice.
    """
    from dsedge.models.checkpoint import save_checkpoint
    from dsedge.utils.io import sha256_file

    stage = EpochCommit(s.run_dir)
    try:
        if raw_model is not None:  # --ema: the raw weights the optimizer steps on
            save_checkpoint(stage.dir / "raw", raw_model, meta)
        save_checkpoint(stage.dir / "last", eval_model, meta)
        if improved:
            save_checkpoint(stage.dir / "best", eval_model, meta)
        parts = stage.part_hashes()
        if not improved:  # best.* stays from an earlier epoch: record it as it is
            parts.update({name: sha256_file(s.run_dir / name) for name in ("best.safetensors", "best.json")
                          if (s.run_dir / name).is_file()})
        opt_meta = save_optimizer(stage.dir, optimizer)
        parts.update(stage.part_hashes())
        atomic_write_json(stage.dir / TRAINER_FILE, {**trainer, "parts": parts, "optimizer": opt_meta})
        stage.commit(epoch)
    except BaseException as e:
        stage.abort()
        if is_disk_full(e):
            raise DsedgeError(f"no space left on the device while saving epoch {epoch} to {s.run_dir}; "
                              f"the run is intact at epoch {epoch - 1}",
                              hint=f"free disk space, then `dsedge train --resume {s.run_dir}`") from None
        raise


def restore(s: Setup, loop: Loop, console: Console) -> None:
    """Load the run's last epoch into `loop`: weights (raw and EMA), optimizer, schedule, bookkeeping.

    An epoch whose save was cut short is finished or dropped first, and the run's
    files and data are checked against what the state recorded, so a resume
    continues exactly where the last complete epoch ended.
    """
    from dsedge.models.checkpoint import load_checkpoint

    cfg, ctx = s.cfg, s.ctx
    done = recover(s.run_dir)  # finish (or drop) an epoch whose save was cut short
    if done and ctx.is_main:
        console.print(f"resume: {'completed' if done == 'completed' else 'discarded'} the "
                      "interrupted save of the last epoch", highlight=False)
    trainer, opt_state = load_state(s.run_dir)
    last, last_meta = load_checkpoint(s.run_dir / "last", expect_model=cfg.model)
    check_parts(s.run_dir, trainer, last_meta.get("epoch"))
    check_same_data(s, last_meta)
    if cfg.ema_decay is not None:  # `last` holds the average; the raw weights live in state/
        loop.ema = build_ema(loop.model, cfg.ema_decay)
        loop.ema.module.load_state_dict(last.state_dict())
        last, _ = load_checkpoint(s.run_dir / "state" / "raw", expect_model=cfg.model)
    loop.model.load_state_dict(last.state_dict())
    loop.optimizer.load_state_dict(opt_state)
    match_param_layout(loop.optimizer)
    loop.scheduler.load_state_dict(trainer["scheduler"])
    if loop.scaler is not None and trainer.get("scaler"):
        loop.scaler.load_state_dict(trainer["scaler"])
    loop.history, loop.bad_epochs = trainer["history"], trainer["bad_epochs"]
    loop.best_loss = trainer.get("best_loss", trainer.get("best_val_loss"))  # the key's name before tuning slices
    loop.start_epoch = trainer["epoch"] + 1
    if ctx.is_main:  # a kill after the epoch commit, before these two: trainer.json holds the epoch (issue 26)
        from dsedge.train.plots import plot_history

        write_history(s.run_dir, loop.history)
        plot_history(loop.history, s.run_dir / "loss.png", title=cfg.model)
        console.print(f"resuming {s.run_dir} at epoch {loop.start_epoch}", highlight=False)


def check_same_data(s: Setup, last_meta: dict[str, Any]) -> None:
    """Refuse to resume on other data than the run was trained on (the checkpoint records its fingerprint)."""
    tuning = (last_meta.get("tuning_split") or {}).get("fingerprint")
    if bool(tuning) != (s.tuning_split is not None):
        raise DsedgeError(f"cannot resume {s.run_dir}: it was trained {'with' if tuning else 'without'} a tuning "
                          "slice", hint="resume with the run's own config (`dsedge train --resume RUN`)")
    for what, split, recorded in (("training", s.train_split, last_meta.get("data_fingerprint")),
                                  ("validation", s.val_split, last_meta.get("val_fingerprint")),
                                  ("tuning", s.tuning_split, tuning)):
        if recorded and split is not None and split.fingerprint() != recorded:
            raise DsedgeError(
                f"cannot resume {s.run_dir}: the {what} data in {s.data} is not what the run was trained on "
                f"(its fingerprint differs)",
                hint="resume with the original --data (omit --data to use the path in config.json), "
                "or start a new run with --init-from RUN/last.safetensors")
