"""bf16 training on CPU without wrong gradients: the grouped dilated convolutions run in float32.

Why (measured with PyTorch 2.14.1 / oneDNN 3.12, AVX512-BF16 CPU): oneDNN has no depthwise
kernel for *dilated* grouped convolutions, so their bf16 weight gradient falls to the generic
`jit_bf16:avx512_core_bf16` backward-weights kernel, which with channels_last tensors returns
garbage (relative error ~1.1 against float32), `inf` or NaN as soon as the feature map is about
31 x 31 or larger. The forward pass and the input gradient are right; dense dilated convolutions,
strided ones and every non-dilated depthwise convolution are right too. In DS-ResNet50 this hits
exactly the d=3 depthwise conv of the dual-scale block in layer1 (64 channels): 28 x 28 at 112 px
(fine, which is why the shipped 112 px recipe trained), 32 x 32 at 128 px and 56 x 56 at 224 px
(broken). That is the "bf16 NaN" seen at 128 px on ISIC + HAM10000 and in the 224 px FixRes
fine-tune: a NaN or infinite weight gradient passes gradient clipping (norm inf -> scale 0 ->
NaN) and AdamW into the weights. SimAM was the first suspect but is not it: its statistics are
float32 in eager and compiled mode (`dsedge.models.simam`, tests/test_models_simam.py).

The fix keeps bf16 everywhere else: `guard_bf16_convs` turns each grouped dilated `nn.Conv2d`
of a model into a `Float32DilatedConv2d`, whose *training* forward under CPU bf16 autocast runs
that one convolution in float32 (input cast up, output cast back to bf16), so both of its
backward kernels are oneDNN's float32 ones. Depthwise convolutions are a sliver of the FLOPs, so
this costs little; evaluation, export and checkpoints are untouched (same class layout, same
parameters and state_dict keys; the class is swapped in place, so an optimizer that already
holds the parameters keeps them).
"""

from __future__ import annotations

import torch
from torch import nn


def _bf16_autocast_on_cpu(x: torch.Tensor) -> bool:
    """True when `x` meets a CPU bf16 autocast region (the case oneDNN gets wrong)."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def needs_guard(module: nn.Module) -> bool:
    """A grouped (incl. depthwise) 2-D convolution with a dilation above 1: its bf16 weight gradient is wrong."""
    return (isinstance(module, nn.Conv2d) and module.groups > 1
            and any(d > 1 for d in module.dilation))


class Float32DilatedConv2d(nn.Conv2d):
    """`nn.Conv2d` whose training forward under CPU bf16 autocast runs in float32 (see the module doc)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and _bf16_autocast_on_cpu(x):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float()).to(torch.bfloat16)
        return super().forward(x)


def guard_bf16_convs(model: nn.Module) -> int:
    """Make every grouped dilated conv of `model` a `Float32DilatedConv2d` in place; returns how many.

    The class is reassigned rather than the module replaced: the parameters stay the very
    objects the optimizer (and DDP, and an EMA built later) already reference.
    """
    guarded = 0
    for module in model.modules():
        if type(module) is nn.Conv2d and needs_guard(module):
            module.__class__ = Float32DilatedConv2d
            guarded += 1
    return guarded
