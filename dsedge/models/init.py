"""ImageNet initialisation from torchvision's ResNet50 weights.

This machine (and many hospital networks) cannot download weights, so we read a
local file: an explicit path, or the torch hub cache where
`torchvision.models.resnet50(weights=...)` would have put it. Every tensor whose
name *and* shape match is copied; the rest stays randomly initialised and is
reported, so the user sees exactly what the pretrained start covered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dsedge.errors import ModelError

RESNET50_FILES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")
RESNET50_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"


@dataclass
class InitReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)  # in both, other shape (e.g. fc)
    missing_in_source: list[str] = field(default_factory=list)  # model tensors left random
    unused_in_source: list[str] = field(default_factory=list)  # source tensors with no home

    def summary(self) -> str:
        return (
            f"ImageNet init from {self.source}: loaded {len(self.loaded)} tensors, "
            f"{len(self.shape_mismatch)} shape mismatches, "
            f"{len(self.missing_in_source)} model tensors left random, "
            f"{len(self.unused_in_source)} source tensors unused"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "loaded": len(self.loaded),
            "shape_mismatch": self.shape_mismatch,
            "left_random": len(self.missing_in_source),
            "unused_in_source": len(self.unused_in_source),
        }


def find_resnet50_weights(path: str | Path | None = None) -> Path:
    """Locate the weights file or raise a `ModelError` telling the user how to get it."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        raise ModelError(f"pretrained weights file not found: {p}", hint=_how_to_get())
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    for name in RESNET50_FILES:
        if (hub / name).is_file():
            return hub / name
    raise ModelError(
        f"no torchvision ResNet50 ImageNet weights in the torch hub cache ({hub})",
        hint=_how_to_get(),
    )


def _how_to_get() -> str:
    return (
        f"download {RESNET50_URL} on a machine with internet access and pass it with "
        "--pretrained FILE (or copy it into $TORCH_HOME/hub/checkpoints/)"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a .pth (with weights_only=True: never unpickle code) or .safetensors state dict."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure means "not a weights file"
        raise ModelError(f"cannot read weights from {path}: {e}", hint=_how_to_get()) from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{path} does not hold a state dict of tensors")
    return sd


def load_matching(model: nn.Module, source: dict[str, torch.Tensor], source_name: str) -> InitReport:
    """Copy every tensor of `source` whose name and shape match into `model`."""
    report = InitReport(source=source_name)
    target = model.state_dict()
    update = {}
    for name, tensor in target.items():
        if name not in source:
            report.missing_in_source.append(name)
        elif source[name].shape != tensor.shape:
            report.shape_mismatch.append(name)
        else:
            update[name] = source[name].to(tensor.dtype)
            report.loaded.append(name)
    report.unused_in_source = [n for n in source if n not in target]
    model.load_state_dict(update, strict=False)
    return report


def load_imagenet_resnet50(model: nn.Module, path: str | Path | None = None) -> InitReport:
    """Map torchvision ResNet50 ImageNet weights onto `model` (ds_resnet50 or resnet50)."""
    file = find_resnet50_weights(path)
    report = load_matching(model, read_state_dict(file), str(file))
    if not report.loaded:
        raise ModelError(f"{file}: no tensor matched the model; is it a ResNet50 state dict?")
    return report
