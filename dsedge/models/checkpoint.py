"""Checkpoints: safetensors weights + a JSON sidecar of metadata. Never pickle.

`save_checkpoint("runs/x/best", model, meta)` writes `best.safetensors` and
`best.json` atomically. The JSON records what is needed to rebuild the model
without the training code's state: registry name, constructor options, classes,
SimAM lambda, preprocessing, plus whatever the caller adds (config, data
fingerprint, metrics). `load_checkpoint` accepts either file of the pair.

The JSON is not hashed by anything the weights carry, so the facts that change
a model's results (classes, model options such as the SimAM lambda, input
size, preprocessing) are also written into the safetensors header, which the
JSON's `weights_sha256` covers. `load_checkpoint` compares the two and refuses
a JSON edited by hand. Checkpoints written before this have no such header
entry and load as before.

`tuning_split` (`dsedge.data.splits.hold_out`'s record: the training images held out and
never trained on, with their fingerprint) is sealed the same way: it is a claim every tuned
fact downstream relies on (best epoch, temperature, operating point, INT8 search), so it
cannot be edited into the JSON afterwards. `tuning_split_record` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dsedge import __version__
from dsedge.errors import CheckpointError, ModelError
from dsedge.utils.io import atomic_path, atomic_write_json, sha256_file

FORMAT = "dsedge-checkpoint"
FACTS_KEY = "dsedge_facts"
#: Metadata keys that change what a checkpoint computes or claims (its tuning slice); sealed into the weights file.
FACT_KEYS = ("model", "classes", "model_kwargs", "simam_lambda", "input_size", "preprocessing", "tuning_split")


def result_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """The result-changing part of checkpoint metadata, in a canonical JSON-able form."""
    return {k: meta.get(k) for k in FACT_KEYS if k in meta}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) paths for `X`, `X.safetensors`, `X.json`, or a shipped name (`isic2017`)."""
    from dsedge.models.shipped import resolve_checkpoint

    p = resolve_checkpoint(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write weights (safetensors) and metadata (JSON). Returns the weights path.

    `meta` must hold at least `model` (registry name) and `classes`.
    """
    from safetensors.torch import save_file

    for key in ("model", "classes"):
        if key not in meta:
            raise ValueError(f"checkpoint metadata needs '{key}'")
    weights, meta_path = checkpoint_paths(path)
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model)  # DistributedDataParallel wrapper
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"num_classes": len(meta["classes"]), "model_kwargs": {}, **meta}  # defaults sealed as written
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, FACTS_KEY: _canonical(result_facts(meta))})
    full = {
        "format": FORMAT,
        "dsedge_version": __version__,
        "torch_version": torch.__version__,
        **meta,
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
    }
    atomic_write_json(meta_path, full)
    return weights


def _explain_not_a_checkpoint(path: str | Path) -> None:
    """A precise error for the usual wrong inputs: a bundle, a run folder, a pickle, another file."""
    p = Path(path)
    if p.is_dir():
        if (p / "dsedge.json").is_file():
            raise CheckpointError(f"{p} is a bundle, not a checkpoint",
                                  "pass the training checkpoint (RUN/best.safetensors); bundles are for predict, bench, calibrate")
        if (p / "best.json").is_file() or (p / "last.json").is_file():
            raise CheckpointError(f"{p} is a run folder, not a checkpoint", f"pass {p / 'best.safetensors'}")
        raise CheckpointError(f"{p} is a folder, not a checkpoint", "pass RUN/best.safetensors of a training run")
    if p.is_file() and p.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin", ".pkl"):
        raise CheckpointError(f"{p} is a PyTorch pickle file, not a dsedge checkpoint",
                              "dsedge never unpickles; ImageNet weights go to `train --pretrained`, a dsedge "
                              "checkpoint is a .safetensors + .json pair")
    if p.is_file() and p.suffix.lower() not in (".safetensors", ".json", ""):
        raise CheckpointError(f"{p} is not a dsedge checkpoint (a .safetensors + .json pair)",
                              "pass RUN/best.safetensors of a training run")


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    _explain_not_a_checkpoint(path)
    weights, meta_path = checkpoint_paths(path)
    if not meta_path.is_file():
        if weights.is_file():
            raise CheckpointError(f"checkpoint metadata missing: {meta_path} (next to {weights})")
        raise CheckpointError(f"checkpoint not found: {path}", "pass the .safetensors or .json of a run")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint metadata {meta_path} is corrupt: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not a dsedge checkpoint")
    return meta


def tuning_split_record(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint's held-out tuning slice record (None: trained without one), checked against the weights.

    Reload its images with `dsedge.data.splits.tuning_split_from_record(data, record)`.
    """
    meta = read_checkpoint_meta(path)
    weights, _ = checkpoint_paths(path)
    if weights.is_file():
        _check_facts(weights, meta)
    return meta.get("tuning_split")


def load_checkpoint(
    path: str | Path, expect_model: str | None = None, map_location: str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its metadata and load the weights (hash-checked, strict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from dsedge.models.specs import build_model as create_model

    meta = read_checkpoint_meta(path)
    weights, _ = checkpoint_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights missing: {weights}")
    if expect_model and meta.get("model") != expect_model:
        raise CheckpointError(
            f"{weights} is a '{meta.get('model')}' checkpoint, expected '{expect_model}'"
        )
    if meta.get("weights_sha256") and sha256_file(weights) != meta["weights_sha256"]:
        raise CheckpointError(f"{weights} does not match the sha256 in its metadata (corrupt or replaced)")
    _check_facts(weights, meta)
    try:
        model = create_model(meta["model"], meta["num_classes"], **meta.get("model_kwargs", {}))
    except ModelError as e:
        raise CheckpointError(f"{weights}: {e.message}") from e
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {weights}: {e}") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{weights} does not fit model '{meta['model']}': {str(e).splitlines()[0]}"
        ) from e
    model.eval()
    return model, meta


def _check_facts(weights: Path, meta: dict[str, Any]) -> None:
    """Refuse metadata whose result-changing facts differ from those sealed in the weights file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            sealed = (f.metadata() or {}).get(FACTS_KEY)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {weights}: {e}") from e
    if sealed is None:
        return  # written before facts were sealed
    recorded = json.loads(sealed)
    mine = json.loads(_canonical(result_facts(meta)))
    changed = sorted(k for k in set(recorded) | set(mine) if recorded.get(k) != mine.get(k))
    if changed:
        raise CheckpointError(
            f"{weights.with_suffix('.json')} was edited: {', '.join(changed)} differ from what the weights were "
            "saved with",
            "restore the .json written by training; classes, preprocessing and model options cannot be changed by hand",
        )
    if not isinstance(meta.get("num_classes"), int) or meta["num_classes"] != len(meta.get("classes") or []):
        raise CheckpointError(f"{weights.with_suffix('.json')}: num_classes does not match its class list",
                              "restore the .json written by training")


def init_from_checkpoint(model: nn.Module, path: str | Path) -> tuple[int, list[str]]:
    """Load every tensor of a dsedge checkpoint whose name and shape match `model` (fine-tuning).

    For 7-class pretraining -> 3-class fine-tuning: the trunk is copied, the
    classifier head (another shape) keeps its fresh initialisation. Returns
    (tensors loaded, names left as initialised). Hash-checked like `load_checkpoint`.
    """
    source, _ = load_checkpoint(path)
    theirs = source.state_dict()
    mine = model.state_dict()
    take = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    if not take:
        raise CheckpointError(f"{path}: no tensor matches this model", hint="--init-from needs a checkpoint "
                              "of the same architecture")
    model.load_state_dict(take, strict=False)
    return len(take), sorted(k for k in mine if k not in take)
