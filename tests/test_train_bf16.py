"""bf16 training on CPU: the dilated depthwise convolutions' weight gradients (the 128 / 224 px NaN).

oneDNN's bf16 backward-weights kernel for grouped dilated convolutions with channels_last
tensors returns garbage, inf or NaN once the feature map is ~31 x 31 or larger (layer1 of
DS-ResNet50 at 128 px and up); `dsedge.train.bf16` runs those convolutions in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dsedge.config import TrainConfig
from dsedge.models.dsresnet import DualScaleConv
from dsedge.models.zoo import create_model
from dsedge.train.bf16 import Float32DilatedConv2d, guard_bf16_convs
from dsedge.train.loop import train


def _block_grads(block: nn.Module, x: torch.Tensor, g: torch.Tensor, bf16: bool,
                 run: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Weight gradients of `block` after one backward of `run` (default: the block itself)."""
    block.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = (run if run is not None else block)(x)
    y.backward(g.to(y.dtype))
    return {k: p.grad.detach().clone() for k, p in block.named_parameters()}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture
def layer1_block() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """DS-ResNet50's layer1 dual-scale block at 128 px (32 x 32 maps, 64 channels), channels_last."""
    torch.manual_seed(0)
    block = DualScaleConv(64).train().to(memory_format=torch.channels_last)
    x = torch.relu(torch.randn(4, 64, 32, 32)).contiguous(memory_format=torch.channels_last)
    g = torch.randn(4, 64, 32, 32).contiguous(memory_format=torch.channels_last)
    return block, x, g


def test_guarded_block_has_float32_accurate_weight_gradients(layer1_block):
    block, x, g = layer1_block
    assert guard_bf16_convs(block) == 1  # conv_d3 (d=3); conv_d1 (d=1) is right in bf16
    ref = _block_grads(block, x, g, bf16=False)
    got = _block_grads(block, x, g, bf16=True)
    for name, grad in got.items():
        assert torch.isfinite(grad).all(), name
        # bf16 rounding through BatchNorm's backward leaves ~5 % on every gradient of the block;
        # the unguarded conv_d3 is at 1.4, inf or NaN
        assert _rel(grad, ref[name]) < 0.15, (name, _rel(grad, ref[name]))


def test_guarded_block_compiled_has_accurate_weight_gradients(layer1_block):
    """The same under torch.compile (what `--compile-scope model` does), within the bf16 noise."""
    block, x, g = layer1_block
    guard_bf16_convs(block)
    ref = _block_grads(block, x, g, bf16=False)
    got = _block_grads(block, x, g, bf16=True, run=torch.compile(block, dynamic=False))
    for name, grad in got.items():
        assert torch.isfinite(grad).all(), name
        assert _rel(grad, ref[name]) < 0.15, (name, _rel(grad, ref[name]))


def test_guard_keeps_parameters_state_dict_and_eval_forward():
    model = create_model("ds_resnet50", 3)
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model.eval()(x)
    assert guard_bf16_convs(model) == 16  # one d=3 depthwise conv per bottleneck
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    assert all(type(m) is Float32DilatedConv2d for name, m in model.named_modules() if name.endswith("conv_d3"))
    assert not any(type(m) is Float32DilatedConv2d for name, m in model.named_modules() if name.endswith("conv_d1"))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), before)
    assert guard_bf16_convs(model) == 0  # idempotent


def test_guarded_conv_runs_float32_only_for_training_under_cpu_bf16():
    conv = nn.Conv2d(8, 8, 3, padding=3, dilation=3, groups=8, bias=False)
    guard_bf16_convs(conv)
    x = torch.randn(1, 8, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv.train()(x).dtype == torch.bfloat16  # the rest of the network stays bf16
        with torch.no_grad():
            assert conv(x).dtype == torch.bfloat16
    assert conv(x).dtype == torch.float32


def test_training_with_bf16_on_cpu_guards_the_dilated_convs(tiny_isic: Path, tmp_path: Path):
    cfg = TrainConfig(image_size=32, batch_size=4, compile=False, amp="bf16", num_workers=0, epochs=1,
                      max_train_batches=1, tuning_fraction=0.0)
    run = train(cfg, tiny_isic, tmp_path, run_name="bf16", show_progress=False)
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    assert resolved["amp"] == "bfloat16" and resolved["bf16_float32_convs"] == 16
    off = train(TrainConfig(**{**cfg.to_dict(), "amp": "off"}), tiny_isic, tmp_path, run_name="fp32",
                show_progress=False)
    assert json.loads((off / "config.json").read_text())["resolved"]["bf16_float32_convs"] == 0
