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
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from torch import nn
from torch.utils.data import DataLoader

from dsedge.config import PreprocessConfig, TrainConfig, check_train_config, merge_into
from dsedge.data import available_splits, load_split
from dsedge.data.samples import DatasetSplit
from dsedge.errors import CheckpointError, DataError, DsedgeError
from dsedge.train import distributed as D
from dsedge.train.bf16 import guard_bf16_convs
from dsedge.train.fused import fuse_simam_for_training
from dsedge.train.loss import FocalLoss, check_alpha, focal_loss
from dsedge.train.schedule import build_ema, build_scheduler
from dsedge.train.state import (
    STATE_DIR,
    TRAINER_FILE,
    EpochCommit,
    check_parts,
    load_state,
    match_param_layout,
    recover,
    save_optimizer,
)
from dsedge.utils.console import make_console
from dsedge.utils.io import atomic_write_json, atomic_write_text, is_disk_full

HISTORY_FIELDS = (
    "epoch", "train_loss", "tuning_loss", "tuning_accuracy", "tuning_balanced_accuracy", "tuning_mean_auc",
    "reporting_loss", "reporting_accuracy", "reporting_balanced_accuracy", "reporting_mean_auc",
    "selected_on", "lr", "seconds", "train_img_per_s",
)
#: Config fields that define *what* is trained: a resumed run may not change them.
RESUME_LOCKED = (
    "model", "batch_size", "lr", "weight_decay", "optimizer", "plateau_factor", "plateau_patience",
    "focal_gamma", "focal_alpha", "balance", "image_size", "simam_lambda", "seed",
    "extra_train", "scheduler", "warmup_epochs", "ema_decay", "grad_clip", "tuning_fraction",
)
#: Values of config fields that runs written before the field existed were trained with.
LEGACY_DEFAULTS = {"tuning_fraction": 0.0}
CONFIG_FILE = "config.json"


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


# ----------------------------------------------------------------------------- configuration


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
    if scope not in ("auto", "model", "simam"):
        raise DsedgeError(f"unknown compile scope '{scope}'", hint="auto, model or simam")
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


def _seed_epoch(seed: int, epoch: int, rank: int) -> int:
    """Re-seed every RNG from (seed, epoch, rank); returns the seed for the DataLoader generator."""
    s = (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % 2**31
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    return s


# ----------------------------------------------------------------------------- data


def _check_splits(data: Path) -> None:
    """Fail before anything is written when the data lacks a train or val split."""
    splits = available_splits(data)
    if "train" not in splits:
        raise DataError(f"{data} has no training split (found: {', '.join(splits) or 'none'})")
    if "val" not in splits:
        raise DataError(
            f"{data} has no validation split (found: {', '.join(splits)})",
            hint="training needs a 'val' split for LR scheduling, early stopping and best-weight "
            "selection: add ISIC-2017_Validation_Data + its ground-truth CSV, ROOT/val/<CLASS>/, or val.csv",
        )


def _load_splits(cfg: TrainConfig, data: Path, run_dir: Path,
                 ctx: D.DistContext) -> tuple[DatasetSplit, DatasetSplit, DatasetSplit | None, dict[str, Any] | None]:
    """(train, val, tuning slice or None, its record or None); the slice comes from `data`'s train split only."""
    _check_splits(data)
    train_split = load_split(data, "train")
    tuning = record = None
    if cfg.tuning_fraction > 0:
        from dsedge.data.splits import hold_out

        train_split, tuning, record = hold_out(train_split, cfg.tuning_fraction, cfg.seed)
    if cfg.extra_train:
        from dsedge.data.samples import concat_splits

        extras = [load_split(Path(p), "train", classes=train_split.classes) for p in cfg.extra_train]
        train_split = concat_splits(train_split, *extras)
    val_split = load_split(data, "val", classes=train_split.classes)
    if len(train_split) == 0 or len(val_split) == 0:
        raise DataError(f"{data}: empty split (train {len(train_split)}, val {len(val_split)} images)")
    _check_images(train_split)
    _check_images(val_split)
    if cfg.balance == "offline":
        train_split = _offline_balanced(train_split, run_dir / "balanced", cfg.seed, ctx)
    return train_split, val_split, tuning, record


def _offline_balanced(split: DatasetSplit, out: Path, seed: int, ctx: D.DistContext) -> DatasetSplit:
    """The paper's offline balancing, written once into the run folder (rank 0) and reused on resume."""
    from dsedge.data.balance import write_balanced
    from dsedge.data.folders import load_folder_split

    marker = out / "balanced.json"
    fp = split.fingerprint()
    if ctx.is_main:
        done = marker.is_file() and json.loads(marker.read_text()).get("source_fingerprint") == fp
        if not done:
            write_balanced(split, out / "train", seed=seed)
            atomic_write_json(marker, {"source_fingerprint": fp, "seed": seed})
    D.barrier(ctx)
    return load_folder_split(out, "train", split.classes)


def _loader(split: DatasetSplit, transform: Any, sampler: D.ShardedSampler, cfg: TrainConfig,
            device: torch.device, gen_seed: int, batch_size: int, drop_last: bool = False) -> DataLoader:
    """A fresh loader per epoch: its worker seeds come from `gen_seed`, i.e. from (seed, epoch, rank).

    Training drops the last partial batch (as DDP recipes do): one fixed batch shape
    keeps a compiled model from recompiling, and BatchNorm never sees a batch of 1.
    """
    from dsedge.data.dataset import ImageDataset
    from dsedge.data.transforms import seed_worker

    workers = max(0, cfg.num_workers)
    return DataLoader(
        ImageDataset(split, transform),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(gen_seed),
        prefetch_factor=4 if workers else None,
        drop_last=drop_last and len(sampler) > batch_size,
    )


# ----------------------------------------------------------------------------- setup

#: What a run folder holds before its first epoch is committed (reused by a new start).
_UNSTARTED_ENTRIES = {CONFIG_FILE, "balanced", STATE_DIR}


def _unstarted(run_dir: Path) -> bool:
    """A run folder left by a start that failed before its first epoch: config.json, balanced/ at most."""
    if (run_dir / STATE_DIR / TRAINER_FILE).exists():
        return False
    return all(p.name in _UNSTARTED_ENTRIES or (p.name.startswith(".") and p.name.endswith(".tmp"))
               for p in run_dir.iterdir())


def _discard_unstarted(run_dir: Path, created: tuple[Path, ...] = ()) -> None:
    """After a failed start, remove the config.json it wrote and the empty folders it created.

    balanced/ (offline-balanced copies) is kept: a new start with the same name reuses it.
    """
    if run_dir.is_dir() and _unstarted(run_dir):
        (run_dir / CONFIG_FILE).unlink(missing_ok=True)
        state = run_dir / STATE_DIR
        if state.is_dir():
            recover(run_dir)
            if not any(state.iterdir()):
                state.rmdir()
        for folder in created:  # deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _check_images(split: DatasetSplit) -> None:
    """Open every image's header before training: a corrupt file fails now, not mid-epoch in a worker."""
    from dsedge.utils.images import image_problem  # header, aspect ratio, truncation (issue 26)

    bad = []
    for sample in split.samples:
        if (problem := image_problem(sample.path)) is not None:
            bad.append(f"{sample.path.name} ({problem})")
    if bad:
        shown = ", ".join(bad[:10]) + (f" ... and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DataError(f"{len(bad)} {split.name} image(s) cannot be read: {shown}",
                        hint=f"run `dsedge data check {split.root}` and remove or replace them")


def _batches(loader: DataLoader):  # noqa: ANN202 - a generator of (x, y)
    """Iterate `loader`, turning a worker's exception (a 28-line traceback inside the message) into one line."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except DsedgeError as e:
            message, hint = _worker_message(e.message)
            raise type(e)(message, hint=e.hint or hint or "run `dsedge data check` on the data") from None
        except (RuntimeError, OSError, ValueError) as e:
            if "DataLoader worker" not in str(e) and "Caught" not in str(e):
                raise
            message, _ = _worker_message(str(e))
            raise DataError(f"reading a training image failed: {message}",
                            hint="run `dsedge data check` on the data; --workers 0 reads in the main process") from None
        yield batch


def _worker_message(text: str) -> tuple[str, str | None]:
    """(message, hint) from an exception re-raised by a DataLoader worker (its traceback is in the text)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("Caught "):
        return text, None
    hint = None
    for i in range(len(lines) - 1, -1, -1):
        ln = lines[i].strip()
        if ln.startswith("hint:"):
            hint = ln[5:].strip()
            continue
        if not lines[i].startswith(" ") and ":" in ln:
            return ln.split(": ", 1)[1] if ": " in ln else ln, hint
    return lines[-1].strip(), hint



def _prepare(cfg: TrainConfig, data: Path | None, out_dir: Path | None, resume: Path | None,
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
        _check_splits(data)
    else:
        if data is None:
            raise DsedgeError("no training data given", hint="dsedge train --data DIR")
        _check_splits(Path(data))
        stamp = D.broadcast_int(ctx, int(time.time()))
        name = run_name or f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(stamp))}"
        run_dir = Path(out_dir or "runs") / name
        if run_dir.exists() and not run_dir.is_dir():
            raise DsedgeError(f"run folder {run_dir} is a file", hint="pick another --name or --out")
        if run_dir.exists() and not _unstarted(run_dir):
            raise DsedgeError(f"run folder {run_dir} already exists",
                              hint="pick another --name, or continue it with --resume")
        D.barrier(ctx)  # every rank checked before rank 0 creates it
        created = tuple(p for p in (run_dir, *run_dir.parents) if not p.exists())
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        D.barrier(ctx)
    data = Path(data)
    try:
        train_split, val_split, tuning_split, tuning_record = _load_splits(cfg, data, run_dir, ctx)
        n_cls = len(train_split.classes)
        # Default alpha is uniform: class balance is the sampler's job. Inverse raw frequencies
        # on top of gamma 2 (the old default, NV 0.099) made the model never predict NV.
        alpha = check_alpha(cfg.focal_alpha, n_cls) if cfg.focal_alpha is not None else [1.0 / n_cls] * n_cls
        amp_dtype = resolve_amp(cfg.amp, ctx.device)
        excludes = init_excludes_tuning(cfg.init_from, tuning_record)
    except BaseException:
        if resume is None and ctx.is_main:
            _discard_unstarted(run_dir, created)
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


def _build_model(s: Setup, console: Console, resuming: bool = False) -> nn.Module:
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


def _checkpoint_meta(s: Setup, epoch: int, results: dict[str, tuple[float, dict[str, Any]]]) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------- epochs


def _autocast(s: Setup) -> Any:
    return torch.autocast(s.ctx.device.type, dtype=s.amp_dtype or torch.float32, enabled=s.amp_dtype is not None)


def _to_device(s: Setup, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
    for i, (x, y) in enumerate(_batches(loader)):
        if s.cfg.max_train_batches is not None and i >= s.cfg.max_train_batches:
            break
        x, y = _to_device(s, x, y)
        with _autocast(s):
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
    for i, (x, y) in enumerate(_batches(loader)):
        if max_batches is not None and i >= max_batches:
            break
        x, y = _to_device(s, x, y)
        with _autocast(s):
            logits = model(x)
        logits = logits.float()
        losses = focal_loss(logits, y, criterion.alpha, criterion.gamma, reduction="none")
        probs = torch.softmax(logits, dim=1)
        rows.append(torch.cat([y.double().unsqueeze(1), losses.double().unsqueeze(1), probs.double()], 1).cpu())
    local = torch.cat(rows) if rows else torch.zeros((0, 2 + len(s.train_split.classes)), dtype=torch.float64)
    allrows = D.all_gather_rows(s.ctx, local).numpy()
    mean_loss = float(allrows[:, 1].mean()) if len(allrows) else math.nan
    return mean_loss, allrows[:, 0].astype(np.int64), allrows[:, 2:]


# ----------------------------------------------------------------------------- entry point


def _progress(s: Setup, console: Console, show: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} img/s"),
        TimeElapsedColumn(), console=console, transient=True, disable=not (show and s.ctx.is_main),
    )


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    lines = [",".join(HISTORY_FIELDS)]
    for row in history:
        lines.append(",".join("" if row.get(k) is None else f"{row[k]:.6g}" if isinstance(row[k], float)
                              else str(row[k]) for k in HISTORY_FIELDS))
    atomic_write_text(run_dir / "history.csv", "\n".join(lines) + "\n")


def _write_config(s: Setup) -> None:
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
        s = _prepare(cfg, data, out_dir, Path(resume) if resume else None, run_name, ctx)
        return _run(s, console, show_progress, resume is not None)
    except BaseException:
        if resume is None and ctx.is_main:  # a failed start leaves no config-only run folder behind
            if s is not None:
                _discard_unstarted(s.run_dir, s.created)
        raise
    finally:
        D.cleanup(ctx)


@dataclass
class _Loop:
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


def _new_loop(s: Setup, console: Console, resuming: bool) -> _Loop:
    """Model, loss, optimizer, sampler and schedule of a fresh start (a resume then loads their state)."""
    cfg, ctx = s.cfg, s.ctx
    _seed_epoch(cfg.seed, 0, 0)  # same initial weights on every rank and in every run with this seed
    model = _build_model(s, console, resuming)
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
    return _Loop(model, criterion, optimizer, scheduler, per_step, scaler, train_sampler)


def _restore(s: Setup, loop: _Loop, console: Console) -> None:
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
    _check_same_data(s, last_meta)
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

        _write_history(s.run_dir, loop.history)
        plot_history(loop.history, s.run_dir / "loss.png", title=cfg.model)
        console.print(f"resuming {s.run_dir} at epoch {loop.start_epoch}", highlight=False)


def _wrap_for_training(s: Setup, loop: _Loop) -> tuple[nn.Module, nn.Module, str]:
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


def _announce(s: Setup, console: Console, scope: str) -> None:
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


def _train_pass(s: Setup, loop: _Loop, step_model: nn.Module, transform: Any, progress: Any,
                epoch: int, gen_seed: int, t0: float) -> tuple[float, int, float]:
    """One epoch of training; (loss sum, samples, seconds since `t0`), loss and samples summed over ranks."""
    cfg, ctx = s.cfg, s.ctx
    loop.train_sampler.set_epoch(epoch)
    loader = _loader(s.train_split, transform, loop.train_sampler, cfg, ctx.device, gen_seed, cfg.batch_size, True)
    n_batches = len(loader) if cfg.max_train_batches is None else min(len(loader), cfg.max_train_batches)
    task = progress.add_task(f"epoch {epoch}/{cfg.epochs}", total=n_batches, loss="-", speed="-")
    loss_sum, seen = train_epoch(s, step_model, loop.criterion, loop.optimizer, loop.scaler, loader, progress, task,
                                 loop.after_step, epoch)
    t_epoch = time.perf_counter() - t0
    loss_sum, seen = D.all_reduce_sum(ctx, [loss_sum, seen])
    progress.remove_task(task)
    return loss_sum, seen, t_epoch


#: History / console name of each evaluated split's role.
ROLES = (("tuning", "tuning"), ("reporting", "val"))


def _evaluate(s: Setup, loop: _Loop, eval_model: nn.Module, split: DatasetSplit, transform: Any,
              epoch: int, gen_seed: int) -> tuple[float, dict[str, Any]]:
    """(loss, metrics) of `eval_model` on `split`; non-finite outputs stop training before they reach a checkpoint."""
    cfg, ctx = s.cfg, s.ctx
    sampler = D.ShardedSampler(split.labels, ctx.rank, ctx.world_size, shuffle=False, pad=False)
    loader = _loader(split, transform, sampler, cfg, ctx.device, gen_seed, cfg.batch_size * 2)
    loss, labels, probs = predict(s, eval_model, loop.criterion, loader, cfg.max_val_batches)
    if not np.isfinite(probs).all():
        raise DsedgeError(f"training diverged at epoch {epoch}: {split.name} outputs are not finite",
                          hint="lower --lr, set --grad-clip, or try --amp off; --resume continues "
                          "from the last good epoch")
    return loss, {"loss": loss, **_val_metrics(labels, probs, s.train_split.classes)}


def _refresh_ema_bn(s: Setup, loop: _Loop, transform: Any, epoch: int, gen_seed: int) -> None:
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
    loader = _loader(s.train_split, transform, sampler, cfg, s.ctx.device, gen_seed, cfg.batch_size, True)
    batches = (_to_device(s, x, y)[0] for x, y in islice(_batches(loader), cfg.ema_bn_batches))
    with _autocast(s):
        recompute_bn(loop.ema.module, batches)


def _epoch_row(s: Setup, epoch: int, train_loss: float, results: dict[str, tuple[float, dict[str, Any]]],
               lr: float) -> dict[str, Any]:
    """One history row: every role's loss, ACC, balanced ACC and mean AUC (empty for a role not evaluated)."""
    row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr,
                           "selected_on": "tuning" if s.tuning_split is not None else "reporting"}
    for role, _ in ROLES:
        loss, m = results.get(role, (None, {}))
        row.update({f"{role}_loss": loss, f"{role}_accuracy": m.get("accuracy"),
                    f"{role}_balanced_accuracy": m.get("balanced_accuracy"), f"{role}_mean_auc": m.get("mean_auc")})
    return row


def _record_epoch(s: Setup, loop: _Loop, console: Console, eval_model: nn.Module, row: dict[str, Any],
                  results: dict[str, tuple[float, dict[str, Any]]], improved: bool) -> None:
    """Rank 0 after each epoch: commit its checkpoints and state, history.csv, loss.png, one console line."""
    from dsedge.train.plots import plot_history

    epoch = row["epoch"]
    meta = _checkpoint_meta(s, epoch, results)
    _commit_epoch(s, epoch, meta, loop.model if loop.ema is not None else None, eval_model, improved,
                  loop.optimizer, loop.trainer_state(epoch))
    _write_history(s.run_dir, loop.history)
    plot_history(loop.history, s.run_dir / "loss.png", title=s.cfg.model)

    def auc(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    parts = [f"epoch {epoch:3d}  train {row['train_loss']:.4f}"]
    for role, label in ROLES:
        if row[f"{role}_loss"] is not None:
            star = " *" if improved and row["selected_on"] == role else "  "
            parts.append(f"{label} {row[f'{role}_loss']:.4f}{star} acc {row[f'{role}_accuracy']:.3f} "
                         f"AUC {auc(row[f'{role}_mean_auc'])}")
    console.print("  ".join(parts) + f"  lr {row['lr']:.2g}  {row['train_img_per_s']:.1f} img/s  "
                  f"{row['seconds']:.0f}s", highlight=False)


def _run_epochs(s: Setup, loop: _Loop, console: Console, show_progress: bool,
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
    with _progress(s, console, show_progress) as progress:
        for epoch in range(loop.start_epoch, cfg.epochs + 1):
            if loop.bad_epochs >= cfg.early_stop_patience:
                break
            t0 = time.perf_counter()
            gen_seed = _seed_epoch(cfg.seed, epoch, ctx.rank)
            loss_sum, seen, t_epoch = _train_pass(s, loop, step_model, t_train, progress, epoch, gen_seed, t0)
            _refresh_ema_bn(s, loop, t_train, epoch, gen_seed)
            results = {role: _evaluate(s, loop, eval_model, split, t_eval, epoch, gen_seed)
                       for role, split in splits.items() if split is not None}
            lr = loop.optimizer.param_groups[0]["lr"]
            row = _epoch_row(s, epoch, loss_sum / max(seen, 1), results, lr)
            improved = loop.end_epoch(results[row["selected_on"]][0])
            row.update(seconds=time.perf_counter() - t0, train_img_per_s=seen / max(t_epoch, 1e-9))
            loop.history.append(row)
            if ctx.is_main:
                _record_epoch(s, loop, console, eval_model, row, results, improved)
            D.barrier(ctx)


def _run(s: Setup, console: Console, show_progress: bool, resuming: bool) -> Path:
    """Set up (or restore) the training state, then run the epochs; returns the run folder."""
    cfg, ctx = s.cfg, s.ctx
    loop = _new_loop(s, console, resuming)
    if resuming:
        _restore(s, loop, console)
    step_model, eval_model, scope = _wrap_for_training(s, loop)
    if ctx.is_main:
        _write_config(s)
        _announce(s, console, scope)
    _run_epochs(s, loop, console, show_progress, step_model, eval_model)
    if ctx.is_main and loop.history and loop.bad_epochs >= cfg.early_stop_patience:
        console.print(f"early stop: no val-loss improvement for {loop.bad_epochs} epochs", highlight=False)
    return s.run_dir


def data_warnings(train_split: DatasetSplit, val_split: DatasetSplit,
                  tuning_split: DatasetSplit | None = None) -> list[str]:
    """What a user should know before hours of training: the loaders' warnings and empty classes."""
    out = list(dict.fromkeys([*train_split.warnings, *val_split.warnings]))
    named = (("training", train_split), ("validation", val_split), ("tuning", tuning_split))
    for what, split in ((w, sp) for w, sp in named if sp is not None):
        empty = [c for c, n in split.class_counts().items() if n == 0]
        if empty:
            effect = ("the model can never learn to predict it" if what == "training"
                      else "its AUC and recall cannot be measured")
            out.append(f"class(es) {', '.join(empty)} have no {what} images: {effect}")
    return out


def _commit_epoch(s: Setup, epoch: int, meta: dict[str, Any], raw_model: nn.Module | None,
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


def _check_same_data(s: Setup, last_meta: dict[str, Any]) -> None:
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


def _val_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from dsedge.metrics import classification_metrics

    return classification_metrics(labels, probs, classes)
