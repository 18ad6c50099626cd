"""DS-ResNet50 structure: shapes, strides, SimAM count, switches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dsedge.models import DSBottleneck, DualScaleConv, SimAM, ds_resnet50


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return ds_resnet50(num_classes=3).eval()


def test_simam_count_is_two_per_bottleneck(model: nn.Module) -> None:
    blocks = [m for m in model.modules() if isinstance(m, DSBottleneck)]
    assert len(blocks) == 3 + 4 + 6 + 3
    assert sum(isinstance(m, SimAM) for m in model.modules()) == 32
    for b in blocks:
        assert isinstance(b.simam1, SimAM) and isinstance(b.simam2, SimAM)


def test_output_shape_and_stage_strides(model: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        y = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        assert y.shape[-1] == 16
        expected = {"layer1": (256, 16), "layer2": (512, 8), "layer3": (1024, 4), "layer4": (2048, 2)}
        for name, (ch, size) in expected.items():
            y = getattr(model, name)(y)
            assert y.shape[1:] == (ch, size, size), name


def test_dual_scale_block_is_depthwise_cascade_with_stride_on_first_conv() -> None:
    block = DualScaleConv(32, stride=2)
    assert block.conv_d1.groups == 32 and block.conv_d3.groups == 32
    assert block.conv_d1.stride == (2, 2) and block.conv_d1.dilation == (1, 1)
    assert block.conv_d3.stride == (1, 1) and block.conv_d3.dilation == (3, 3) and block.conv_d3.padding == (3, 3)
    x = torch.randn(1, 32, 16, 16)
    block.eval()
    out = block(x)
    assert out.shape == (1, 32, 8, 8)
    a = block.relu(block.bn_d1(block.conv_d1(x)))
    b = block.relu(block.bn_d3(block.conv_d3(a)))
    assert torch.allclose(out, a + b)


def test_full_conv_and_concat_switches() -> None:
    m = ds_resnet50(depthwise=False, fusion="concat", simam_lambda=0.1).eval()
    b = m.layer2[0]
    assert b.dual.conv_d1.groups == 1 and hasattr(b.dual, "fuse")
    assert b.simam1.lam == 0.1
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    assert sum(p.numel() for p in m.parameters()) > sum(p.numel() for p in ds_resnet50().parameters())
    with pytest.raises(ValueError):
        DualScaleConv(8, fusion="max")


def test_shortcut_uses_conv_bn_when_shape_changes(model: nn.Module) -> None:
    assert isinstance(model.layer1[0].downsample, nn.Sequential)
    assert model.layer1[1].downsample is None
    assert model.layer2[0].downsample[0].stride == (2, 2)
