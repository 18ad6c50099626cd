"""Shipped weights: the reference DS-ResNet50 trained by dsedge, loadable by name.

Like timm's pretrained configs, a weight set is named (`isic2017`) and carries its
facts (classes, input size, preprocessing, SimAM lambda, recipe, val metrics) in
its checkpoint JSON. Anywhere a checkpoint path is accepted (`dsedge export`,
`eval`, `bench --checkpoint`, `--init-from`), the name works too, and
`create_model("ds_resnet50", pretrained="isic2017")` returns the trained model.

Storage: parameters in FP16, BatchNorm buffers in FP32 (the repository allows one
model file of at most 30 MB; FP32 would be 49 MB). They are loaded into an FP32
model, so every figure in `MODEL_CARD.md` is measured on exactly what ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsedge.errors import CheckpointError
from dsedge.models.shipped import (  # noqa: F401 - the table, re-exported
    MAX_SHIPPED_BYTES,
    SHIPPED,
    WEIGHTS_DIR,
    reference_checkpoint,
    resolve_checkpoint,
    shipped_meta,
)


def ship_checkpoint(source: str | Path, name: str = "isic2017", extra_meta: dict[str, Any] | None = None) -> Path:
    """Write `source` (a dsedge checkpoint) as the shipped weight set `name`: FP16 params, FP32 buffers."""
    import torch
    from safetensors.torch import save_file

    from dsedge.models.checkpoint import checkpoint_paths, load_checkpoint
    from dsedge.utils.io import atomic_path, atomic_write_json, sha256_file

    model, meta = load_checkpoint(source)
    params = {n for n, _ in model.named_parameters()}
    state = {k: (v.half() if k in params else v).contiguous() for k, v in model.state_dict().items()}
    weights, meta_path = checkpoint_paths(WEIGHTS_DIR / SHIPPED[name][1])
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": meta["format"]})
    if weights.stat().st_size > MAX_SHIPPED_BYTES:
        raise CheckpointError(f"{weights} is {weights.stat().st_size / 2**20:.1f} MiB, over the 30 MiB limit")
    meta = {**meta, **(extra_meta or {}), "storage": "fp16 parameters, fp32 buffers",
            "shipped_name": name, "weights_file": weights.name, "weights_sha256": sha256_file(weights),
            "source_torch_dtype": str(torch.float32)}
    atomic_write_json(meta_path, meta)
    return weights
