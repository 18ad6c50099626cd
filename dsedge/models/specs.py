"""The model table: one `ModelSpec` per architecture and `build_model`, a fresh (untrained) model by name.

The lower half of the model zoo: checkpoint loading rebuilds a model from its
metadata here, while `dsedge.models.zoo.create_model` adds pretrained weights
on top (which itself loads checkpoints); with both in one module
`checkpoint -> zoo -> checkpoint` was an import circle (issue 24).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torchvision.models as tvm
from torch import nn

from dsedge.errors import ModelError
from dsedge.models.dsresnet import ds_resnet50


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    input_size: int = 224
    description: str = ""
    imagenet_init: bool = False  # can map torchvision ResNet50 ImageNet weights


def _torchvision(factory: Callable[..., nn.Module], **fixed: object) -> Callable[..., nn.Module]:
    """Builder of a torchvision model with a `num_classes` head (plus the options it is always built with)."""

    def build(num_classes: int) -> nn.Module:
        return factory(num_classes=num_classes, **fixed)

    return build


_NO_AUX = {"aux_logits": False, "init_weights": True}  # GoogLeNet and Inception v3: one head, initialised


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("ds_resnet50", ds_resnet50, 224, "ResNet50 + SimAM + dual-scale dilated DW", True),
        ModelSpec("resnet50", _torchvision(tvm.resnet50), 224, "torchvision ResNet50 (baseline)", True),
        ModelSpec("vgg16", _torchvision(tvm.vgg16), 224, "torchvision VGG16 (baseline)"),
        ModelSpec("googlenet", _torchvision(tvm.googlenet, **_NO_AUX), 224,
                  "torchvision GoogLeNet, no aux heads (baseline)"),
        ModelSpec("mobilenet_v2", _torchvision(tvm.mobilenet_v2), 224, "torchvision MobileNetV2 (baseline)"),
        ModelSpec("shufflenet_v2_x1_0", _torchvision(tvm.shufflenet_v2_x1_0), 224,
                  "torchvision ShuffleNetV2 1.0x (baseline)"),
        ModelSpec("inception_v3", _torchvision(tvm.inception_v3, **_NO_AUX), 299,
                  "torchvision InceptionV3, no aux (baseline)"),
    )
}


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown model '{name}'", hint=f"choose one of: {', '.join(MODELS)}"
        ) from None


def build_model(name: str, num_classes: int = 3, **kwargs: object) -> nn.Module:
    """A freshly initialised registry model with a `num_classes` head; `kwargs` go to the builder
    (only ds_resnet50 takes any: simam_lambda, depthwise, fusion, dilation)."""
    spec = get_spec(name)
    if kwargs and name != "ds_resnet50":
        raise ModelError(f"model '{name}' takes no options, got {sorted(kwargs)}")
    try:
        return spec.build(num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise ModelError(f"cannot build '{name}': {e}") from e
