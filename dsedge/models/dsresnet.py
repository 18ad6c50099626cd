"""DS-ResNet50: ResNet50 whose bottlenecks carry SimAM and a dual-scale dilated depthwise block.

Layout follows torchvision's `resnet.py` (same attribute names for the stem, the
1x1 convs, their BatchNorms, the shortcut and the classifier) so that ImageNet
ResNet50 weights map onto every tensor whose name and shape match
(`dsedge.models.init`). DESIGN §2 has the reading of the paper:

    x -> 1x1 conv, BN, ReLU -> SimAM -> DualScale -> SimAM -> 1x1 conv, BN (+ shortcut) -> ReLU
    DualScale(y): a = ReLU(BN(DW3x3(y, d=1, stride)));  b = ReLU(BN(DW3x3(a, d=3)));  a + b
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dsedge import SIMAM_LAMBDA
from dsedge.models.simam import SimAM


def conv3x3(channels: int, stride: int = 1, dilation: int = 1, depthwise: bool = True) -> nn.Conv2d:
    """3x3 conv keeping `channels`; `padding = dilation` keeps the spatial size (at stride 1)."""
    return nn.Conv2d(
        channels,
        channels,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        groups=channels if depthwise else 1,
        bias=False,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class DualScaleConv(nn.Module):
    """Cascade of a d=1 and a d=3 3x3 conv, fused.

    The second conv sees the first one's output, so the two branches have 3x3
    and 3x3 + 7x7 (k' = k + (k-1)(r-1)) receptive fields. `fusion="sum"` adds
    them (default); `fusion="concat"` concatenates and mixes with a 1x1 conv.
    The stride sits on the first conv, as in ResNet v1.5.
    """

    def __init__(
        self,
        channels: int,
        stride: int = 1,
        dilation: int = 3,
        depthwise: bool = True,
        fusion: str = "sum",
    ) -> None:
        super().__init__()
        if fusion not in ("sum", "concat"):
            raise ValueError(f"fusion must be 'sum' or 'concat', got {fusion!r}")
        self.fusion = fusion
        self.conv_d1 = conv3x3(channels, stride=stride, dilation=1, depthwise=depthwise)
        self.bn_d1 = nn.BatchNorm2d(channels)
        self.conv_d3 = conv3x3(channels, stride=1, dilation=dilation, depthwise=depthwise)
        self.bn_d3 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        if fusion == "concat":
            self.fuse = nn.Sequential(
                conv1x1(2 * channels, channels), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
            )

    def forward(self, x: Tensor) -> Tensor:
        a = self.relu(self.bn_d1(self.conv_d1(x)))
        b = self.relu(self.bn_d3(self.conv_d3(a)))
        if self.fusion == "sum":
            return a + b
        return self.fuse(torch.cat([a, b], dim=1))


class DSBottleneck(nn.Module):
    """The DS-ResNet50 bottleneck (replaces torchvision's `Bottleneck`)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        simam_lambda: float = SIMAM_LAMBDA,
        depthwise: bool = True,
        fusion: str = "sum",
        dilation: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.simam1 = SimAM(simam_lambda)
        self.dual = DualScaleConv(width, stride, dilation, depthwise, fusion)
        self.simam2 = SimAM(simam_lambda)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.simam1(out)
        out = self.dual(out)
        out = self.simam2(out)
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class DSResNet(nn.Module):
    """ResNet trunk (torchvision layout) built from `DSBottleneck`s."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        num_classes: int = 3,
        simam_lambda: float = SIMAM_LAMBDA,
        depthwise: bool = True,
        fusion: str = "sum",
        dilation: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.simam_lambda = float(simam_lambda)
        self._block_kwargs = dict(
            simam_lambda=simam_lambda, depthwise=depthwise, fusion=fusion, dilation=dilation
        )
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * DSBottleneck.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, DSBottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def _make_layer(self, width: int, blocks: int, stride: int = 1) -> nn.Sequential:
        out = width * DSBottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))
        layers = [DSBottleneck(self.inplanes, width, stride, downsample, **self._block_kwargs)]
        self.inplanes = out
        layers += [DSBottleneck(out, width, **self._block_kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))


def ds_resnet50(
    num_classes: int = 3,
    simam_lambda: float = SIMAM_LAMBDA,
    depthwise: bool = True,
    fusion: str = "sum",
    dilation: int = 3,
) -> DSResNet:
    """DS-ResNet50 as DESIGN §2 reads the paper (depthwise, sum fusion, lambda SIMAM_LAMBDA = 1e-4 by default)."""
    return DSResNet(
        (3, 4, 6, 3),
        num_classes=num_classes,
        simam_lambda=simam_lambda,
        depthwise=depthwise,
        fusion=fusion,
        dilation=dilation,
    )
