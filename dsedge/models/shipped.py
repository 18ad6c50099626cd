"""The shipped weight sets, by name: where they live and how a name resolves to a file. Torch-free.

The read-only half of `dsedge.models.weights` (which also writes them): a
checkpoint path anywhere may be a shipped name (`isic2017`), so checkpoint I/O
resolves names here without importing the writer, the model zoo or torch, and
`checkpoint -> weights -> checkpoint` is no longer an import circle (issue 24).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsedge.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).parent / "weights"
#: name -> (registry model, checkpoint stem inside WEIGHTS_DIR)
SHIPPED: dict[str, tuple[str, str]] = {"isic2017": ("ds_resnet50", "ds_resnet50_isic2017")}
MAX_SHIPPED_BYTES = 30 * 1024 * 1024


def reference_checkpoint(name: str = "isic2017") -> Path | None:
    """The shipped checkpoint's `.safetensors` path, or None when this install has no such file."""
    if name not in SHIPPED:
        return None
    path = WEIGHTS_DIR / f"{SHIPPED[name][1]}.safetensors"
    return path if path.is_file() and path.with_suffix(".json").is_file() else None


def resolve_checkpoint(spec: str | Path) -> Path:
    """A checkpoint path for `spec`: a shipped name (`isic2017`) or a path, unchanged."""
    text = str(spec)
    if text in SHIPPED and not Path(text).exists():
        path = reference_checkpoint(text)
        if path is None:
            raise CheckpointError(f"the shipped '{text}' weights are missing from this install",
                                  hint=f"expected {WEIGHTS_DIR}/{SHIPPED[text][1]}.safetensors")
        return path
    return Path(spec)


def shipped_meta(name: str = "isic2017") -> dict[str, Any] | None:
    path = reference_checkpoint(name)
    return None if path is None else json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
