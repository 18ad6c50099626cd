"""Resume state without pickle: optimizer tensors in safetensors, everything else in JSON.

`torch.save` would pickle the optimizer; a run folder must never need unpickling
to resume. The optimizer's per-parameter tensors (Adam's step, exp_avg,
exp_avg_sq) go to `state/optimizer.safetensors` with bit-exact values; its
param groups, the LR scheduler, the grad scaler, the early-stopping counters and
the history go to `state/trainer.json`, written last so that it marks a complete
epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dsedge.errors import CheckpointError
from dsedge.utils.io import atomic_path, atomic_write_json

STATE_DIR = "state"
TRAINER_FILE = "trainer.json"
OPTIMIZER_FILE = "optimizer.safetensors"


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


def save_state(run_dir: Path, optimizer: torch.optim.Optimizer, trainer: dict[str, Any]) -> None:
    """Write the optimizer tensors, then `trainer.json` (the commit marker of the epoch)."""
    from safetensors.torch import save_file

    d = run_dir / STATE_DIR
    d.mkdir(parents=True, exist_ok=True)
    tensors, opt_meta = optimizer_to_flat(optimizer.state_dict())
    with atomic_path(d / OPTIMIZER_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "dsedge-optimizer"})
    atomic_write_json(d / TRAINER_FILE, {**trainer, "optimizer": opt_meta})


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
