"""Training-only fused SimAM: the same math, compiled into a few kernels by torch.compile.

In eager mode SimAM is ~10 separate memory-bound passes forward and as many
backward (plus dtype casts under autocast); profiling a CPU training step shows
them costing about as much as all the convolutions. Compiling the *whole* model
fuses them too, but inductor needs minutes (about 10 on a busy 2-core CPU) for
DS-ResNet50's forward + backward graphs. Compiling just the SimAM function with
dynamic shapes gives one small graph for all 32 SimAM sites, ready in seconds.

`TrainSimAM` subclasses `SimAM` and only changes the *training-mode* forward;
eval-mode forward is the model's own `simam()`, so exported ONNX graphs and
checkpoints are unaffected (SimAM has no weights; the swap leaves state_dict
keys unchanged).
"""

from __future__ import annotations

import torch
from torch import nn

from dsedge.models.simam import SimAM, simam

_compiled = None


def _fused_simam():
    """The compiled SimAM (created once per process, dynamic shapes: one graph for all sites)."""
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(simam, dynamic=True, fullgraph=True)
    return _compiled


class TrainSimAM(SimAM):
    """SimAM whose training-mode forward runs the compiled kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            return _fused_simam()(x, self.lam)
        return simam(x, self.lam)


def fuse_simam_for_training(model: nn.Module) -> int:
    """Swap every `SimAM` in `model` for a `TrainSimAM` in place; returns how many were swapped."""
    swapped = 0
    for module in model.modules():
        for name, child in list(module.named_children()):
            if type(child) is SimAM:
                setattr(module, name, TrainSimAM(child.lam))
                swapped += 1
    return swapped
