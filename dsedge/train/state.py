"""Resume state without pickle: optimizer tensors in safetensors, everything else in JSON.

`torch.save` would pickle the optimizer; a run folder must never need unpickling
to resume. The optimizer's per-parameter tensors (Adam's step, exp_avg,
exp_avg_sq) go to `state/optimizer.safetensors` with bit-exact values; its
param groups, the LR scheduler, the grad scaler, the early-stopping counters and
the history go to `state/trainer.json`.

One epoch writes up to eight files (last.*, best.*, state/raw.* with --ema,
state/optimizer.safetensors, state/trainer.json), and no file system renames
eight files in one step. A kill between two of them used to leave a run that
either failed every --resume on a sha mismatch or silently trained an epoch
twice. So an epoch is committed like a database transaction (`EpochCommit`):

1. every part is written into `state/.epoch-commit/` (the old parts stay untouched);
2. `COMMITTED` (their names and sha256) is written there atomically: the commit point;
3. each part is renamed onto its final name; the staging folder is removed.

`recover()` (run before every resume) finishes step 3 when `COMMITTED` exists
and discards the staging folder when it does not, so the run is at exactly one
epoch or the next, never in between. `trainer.json` also lists every part's
sha256, and `check_parts()` refuses a run whose files disagree with it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from dsedge.errors import CheckpointError
from dsedge.utils.io import atomic_path, atomic_write_json, sha256_file

STATE_DIR = "state"
TRAINER_FILE = "trainer.json"
OPTIMIZER_FILE = "optimizer.safetensors"
STAGING_DIR = ".epoch-commit"
COMMIT_MARKER = "COMMITTED"
#: Staged file name -> its place in the run folder.
PART_DESTINATIONS = {
    "last.safetensors": "last.safetensors", "last.json": "last.json",
    "best.safetensors": "best.safetensors", "best.json": "best.json",
    "raw.safetensors": f"{STATE_DIR}/raw.safetensors", "raw.json": f"{STATE_DIR}/raw.json",
    OPTIMIZER_FILE: f"{STATE_DIR}/{OPTIMIZER_FILE}", TRAINER_FILE: f"{STATE_DIR}/{TRAINER_FILE}",
}


def optimizer_to_flat(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split `optimizer.state_dict()` into named tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            name = f"{pid}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(meta.get("scalars", {}).items()):
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_state(run_dir: Path, optimizer: torch.optim.Optimizer, trainer: dict[str, Any],
               state_dir: Path | None = None) -> None:
    """Write the optimizer tensors, then `trainer.json` (into `state_dir`, default RUN/state)."""
    d = state_dir if state_dir is not None else run_dir / STATE_DIR
    opt_meta = save_optimizer(d, optimizer)
    atomic_write_json(d / TRAINER_FILE, {**trainer, "optimizer": opt_meta})


def save_optimizer(state_dir: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Write `optimizer.safetensors` into `state_dir`; returns the JSON part trainer.json must hold."""
    from safetensors.torch import save_file

    state_dir.mkdir(parents=True, exist_ok=True)
    tensors, opt_meta = optimizer_to_flat(optimizer.state_dict())
    with atomic_path(state_dir / OPTIMIZER_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "dsedge-optimizer"})
    return opt_meta


class EpochCommit:
    """Stage every file of one epoch, then make them current together (see the module docstring).

    Usage: `stage = EpochCommit(run_dir)`; write parts under `stage.dir` (names in
    `PART_DESTINATIONS`); `stage.part_hashes()` for trainer.json; write trainer.json
    last; `stage.commit(epoch)`. On failure call `stage.abort()`: the previous epoch stays.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / STATE_DIR / STAGING_DIR
        recover(self.run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def part_hashes(self, exclude: tuple[str, ...] = (TRAINER_FILE,)) -> dict[str, str]:
        """Final place -> sha256 of every staged part (trainer.json records them)."""
        return {PART_DESTINATIONS[f.name]: sha256_file(f) for f in sorted(self.dir.iterdir())
                if f.name in PART_DESTINATIONS and f.name not in exclude}

    def commit(self, epoch: int) -> None:
        if not (self.dir / TRAINER_FILE).is_file():
            raise ValueError("write trainer.json into the staging folder before committing")
        atomic_write_json(self.dir / COMMIT_MARKER, {"epoch": epoch, "files": self.part_hashes(exclude=())})
        _install(self.run_dir, self.dir)

    def abort(self) -> None:
        if not (self.dir / COMMIT_MARKER).is_file():
            shutil.rmtree(self.dir, ignore_errors=True)


def _install(run_dir: Path, staging: Path) -> None:
    """Step 3: move the committed parts into place (idempotent: a part already moved is skipped)."""
    for name, dest in PART_DESTINATIONS.items():
        if (staging / name).is_file():
            (run_dir / dest).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, run_dir / dest)
    (staging / COMMIT_MARKER).unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)


def recover(run_dir: Path) -> str | None:
    """Finish a committed epoch cut short by a kill, or drop an uncommitted one. Returns what it did."""
    staging = Path(run_dir) / STATE_DIR / STAGING_DIR
    if not staging.is_dir():
        return None
    if (staging / COMMIT_MARKER).is_file():
        _install(Path(run_dir), staging)
        return "completed"
    shutil.rmtree(staging, ignore_errors=True)
    return "discarded"


def check_parts(run_dir: Path, trainer: dict[str, Any], last_epoch: int | None) -> None:
    """Refuse a run folder whose checkpoint files are not the ones its trainer state was saved with.

    New runs list every part's sha256 in trainer.json. Runs written before that
    (no "parts") are checked by epoch: `last` (and state/raw with --ema) must
    be the epoch trainer.json says, else resuming would train that epoch twice.
    """
    parts = trainer.get("parts")
    if parts:
        for dest, digest in parts.items():
            p = Path(run_dir) / dest
            if not p.is_file() or sha256_file(p) != digest:
                raise CheckpointError(
                    f"cannot resume {run_dir}: {dest} is not the file saved with epoch {trainer.get('epoch')} "
                    f"({'missing' if not p.is_file() else 'changed since'})",
                    hint="restore the run folder's files as training left them, or start a new run "
                    "(--init-from RUN/best.safetensors keeps the weights)",
                )
        return
    if last_epoch is not None and last_epoch != trainer.get("epoch"):
        raise CheckpointError(
            f"cannot resume {run_dir}: last.json is epoch {last_epoch} but the trainer state is epoch "
            f"{trainer.get('epoch')} (training was stopped while saving)",
            hint="start a new run with --init-from RUN/last.safetensors, or restore matching files",
        )


def load_state(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer dict, optimizer state_dict) of a run folder, with clear errors when absent."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = run_dir / STATE_DIR
    if not (d / TRAINER_FILE).is_file() or not (d / OPTIMIZER_FILE).is_file():
        raise CheckpointError(
            f"{run_dir} has no resume state ({STATE_DIR}/{TRAINER_FILE})",
            hint="--resume takes a run folder written by `dsedge train` after at least one epoch",
        )
    try:
        trainer = json.loads((d / TRAINER_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(d / OPTIMIZER_FILE))
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError) as e:
        raise CheckpointError(f"resume state in {d} is corrupt: {e}") from e
    return trainer, optimizer_from_flat(tensors, trainer.pop("optimizer"))


def match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every loaded per-parameter state tensor its parameter's memory layout.

    safetensors stores contiguous tensors, but with channels_last the conv weights
    (and so Adam's exp_avg / exp_avg_sq created during training) are NHWC-strided.
    The fused Adam kernel walks param, grad and state as flat memory, so a layout
    mismatch after resume silently mixes up elements; restoring the strides makes
    a resumed run identical to an uninterrupted one.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            for key, value in st.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    st[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
