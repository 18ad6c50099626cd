"""What a run tells its user and its folder: config.json, history.csv, progress bars, console lines."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

from dsedge.train.loaders import data_warnings
from dsedge.train.options import CONFIG_FILE, compile_scope
from dsedge.train.setup import Setup
from dsedge.utils.io import atomic_write_json, atomic_write_text

HISTORY_FIELDS = (
    "epoch", "train_loss", "tuning_loss", "tuning_accuracy", "tuning_balanced_accuracy", "tuning_mean_auc",
    "reporting_loss", "reporting_accuracy", "reporting_balanced_accuracy", "reporting_mean_auc",
    "selected_on", "lr", "seconds", "train_img_per_s",
)


#: History / console name of each evaluated split's role.
ROLES = (("tuning", "tuning"), ("reporting", "val"))


class PlainProgress:
    """The training bar's interface (add_task / update / remove_task) as throttled lines on stderr.

    rich draws nothing when stderr is not a terminal (`nohup dsedge train ... > log`), which left a
    log silent for a whole epoch. One line per `interval` seconds: epoch, steps, loss, speed.
    """

    def __init__(self, interval: float = 60.0, stream: Any = None) -> None:
        self.interval, self.stream = interval, stream
        self._tasks: dict[int, dict[str, Any]] = {}
        self._t0 = time.monotonic()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: int | None = None, **fields: Any) -> int:
        task = len(self._tasks)
        self._tasks[task] = {"description": description, "total": total, "completed": 0, "last": None, **fields}
        return task

    def update(self, task: int, completed: int | None = None, **fields: Any) -> None:
        t = self._tasks[task]
        t.update(fields)
        if completed is not None:
            t["completed"] = completed
        now = time.monotonic()
        if t["last"] is None or now - t["last"] >= self.interval or t["completed"] == t["total"]:
            t["last"] = now
            stream = self.stream or sys.stderr
            stream.write(f"[{now - self._t0:6.0f}s] {t['description']} {t['completed']}/{t['total']} "
                         f"loss {t.get('loss', '-')} {t.get('speed', '-')} img/s\n")
            stream.flush()

    def remove_task(self, task: int) -> None:
        self._tasks.pop(task, None)


def progress_bars(s: Setup, console: Console, show: bool) -> Any:
    """A rich bar in a terminal; `PlainProgress` lines anywhere else (a log file, a pipe)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    shown = show and s.ctx.is_main
    if shown and not Console(stderr=True).is_terminal and not console.is_terminal:
        return PlainProgress()
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} img/s"),
        TimeElapsedColumn(), console=console, transient=True, disable=not shown,
    )


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    lines = [",".join(HISTORY_FIELDS)]
    for row in history:
        lines.append(",".join("" if row.get(k) is None else f"{row[k]:.6g}" if isinstance(row[k], float)
                              else str(row[k]) for k in HISTORY_FIELDS))
    atomic_write_text(run_dir / "history.csv", "\n".join(lines) + "\n")


def write_config(s: Setup) -> None:
    atomic_write_json(s.run_dir / CONFIG_FILE, {
        "train": s.cfg.to_dict(),
        "data": str(s.data.resolve()),
        "classes": list(s.train_split.classes),
        "class_counts": {"train": s.train_split.class_counts(), "val": s.val_split.class_counts(),
                         **({"tuning": s.tuning_split.class_counts()} if s.tuning_split is not None else {})},
        "tuning_split": s.tuning_record,
        "focal_alpha": s.alpha,
        "preprocessing": s.preprocess.to_dict(),
        "resolved": {
            "device": str(s.ctx.device), "world_size": s.ctx.world_size, "backend": s.ctx.backend,
            "amp": str(s.amp_dtype).replace("torch.", "") if s.amp_dtype else "off",
            "channels_last": s.channels_last, "compile": compile_scope(s.cfg, s.ctx.device),
            "bf16_float32_convs": s.float32_convs,
            "torch": torch.__version__,
        },
    })


def announce(s: Setup, console: Console, scope: str) -> None:
    """One summary of what is about to train, and the data warnings, before hours of training."""
    cfg, ctx = s.cfg, s.ctx
    counts = ", ".join(f"{k} {v}" for k, v in s.train_split.class_counts().items())
    tuning = (f"tuning {len(s.tuning_split)} held out of train, selects epochs; val {len(s.val_split)} reports"
              if s.tuning_split is not None else f"val {len(s.val_split)}")
    console.print(
        f"[bold]{cfg.model}[/] on {s.data} ({counts}; {tuning}) -> {s.run_dir}\n"
        f"device {ctx.device} x{ctx.world_size}, amp {s.amp_dtype or 'off'}, channels_last "
        f"{s.channels_last}, compile {scope}"
        f"{f', {s.float32_convs} dilated convs in fp32' if s.float32_convs else ''}, alpha {[round(a, 3) for a in s.alpha]}", highlight=False)
    for warning in data_warnings(s.train_split, s.val_split, s.tuning_split):
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if s.tuning_split is None:
        console.print("[yellow]warning:[/] no tuning slice (--tuning-fraction 0): epochs are selected on val, "
                      "so val numbers are in-sample", highlight=False)
    if s.init_excludes_tuning is False:
        console.print(f"[yellow]warning:[/] --init-from {escape(str(cfg.init_from))} records no tuning slice that "
                      f"holds this run's {len(s.tuning_split or [])} tuning images out: if it was trained on them "
                      "(the shipped isic2017 model was), tuning numbers are in-sample; start from a run trained "
                      "with the same --tuning-fraction and --seed", highlight=False)


def epoch_row(s: Setup, epoch: int, train_loss: float, results: dict[str, tuple[float, dict[str, Any]]],
              lr: float) -> dict[str, Any]:
    """One history row: every role's loss, ACC, balanced ACC and mean AUC (empty for a role not evaluated)."""
    row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr,
                           "selected_on": "tuning" if s.tuning_split is not None else "reporting"}
    for role, _ in ROLES:
        loss, m = results.get(role, (None, {}))
        row.update({f"{role}_loss": loss, f"{role}_accuracy": m.get("accuracy"),
                    f"{role}_balanced_accuracy": m.get("balanced_accuracy"), f"{role}_mean_auc": m.get("mean_auc")})
    return row


def epoch_line(row: dict[str, Any], improved: bool) -> str:
    """The console line of one epoch: train loss, each evaluated role's loss / ACC / AUC (* = selected), LR, speed."""

    def auc(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    parts = [f"epoch {row['epoch']:3d}  train {row['train_loss']:.4f}"]
    for role, label in ROLES:
        if row[f"{role}_loss"] is not None:
            star = " *" if improved and row["selected_on"] == role else "  "
            parts.append(f"{label} {row[f'{role}_loss']:.4f}{star} acc {row[f'{role}_accuracy']:.3f} "
                         f"AUC {auc(row[f'{role}_mean_auc'])}")
    return "  ".join(parts) + f"  lr {row['lr']:.2g}  {row['train_img_per_s']:.1f} img/s  {row['seconds']:.0f}s"


def val_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from dsedge.metrics import classification_metrics

    return classification_metrics(labels, probs, classes)
