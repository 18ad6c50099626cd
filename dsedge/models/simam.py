"""SimAM: a parameter-free 3-D attention (Yang et al., ICML 2021).

For each channel, a neuron's importance is the inverse of its minimal energy
    e_inv = (x - mu)^2 / (4 * (var + lambda)) + 0.5
computed over the spatial positions, and the feature is re-weighted by
sigmoid(e_inv). It has no weights, so it costs nothing to store but is a
memory-bound chain of small ops in eager mode; export turns it into a single
`dsedge::SimAM` ONNX node (see `dsedge.export`).
"""

from __future__ import annotations

import torch
from torch import nn

from dsedge import SIMAM_LAMBDA


def simam(x: torch.Tensor, lam: float = SIMAM_LAMBDA) -> torch.Tensor:
    """Functional SimAM on an NCHW tensor.

    n = H*W - 1 as in the authors' code; clamped to >= 1 so a 1x1 feature map
    (tiny test inputs) does not divide by zero. The statistics are computed in
    float32 even under fp16/bf16 autocast: `var + lambda` with lambda = SIMAM_LAMBDA (1e-4) is
    not representable accurately in half precision.
    """
    orig_dtype = x.dtype
    xf = x.float() if orig_dtype in (torch.float16, torch.bfloat16) else x
    n = max(xf.shape[2] * xf.shape[3] - 1, 1)
    d = (xf - xf.mean(dim=(2, 3), keepdim=True)).pow(2)
    v = d.sum(dim=(2, 3), keepdim=True) / n
    e_inv = d / (4 * (v + lam)) + 0.5
    return (xf * torch.sigmoid(e_inv)).to(orig_dtype)


class SimAM(nn.Module):
    """Module wrapper around :func:`simam`; `lam` is recorded in checkpoints and the ONNX node."""

    def __init__(self, lam: float = SIMAM_LAMBDA) -> None:
        super().__init__()
        if lam <= 0:
            raise ValueError(f"SimAM lambda must be > 0, got {lam}")
        self.lam = float(lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return simam(x, self.lam)

    def extra_repr(self) -> str:
        return f"lam={self.lam:g}"
