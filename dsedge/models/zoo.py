"""Model registry: `create_model(name, num_classes, pretrained)` for DS-ResNet50 and the paper's baselines.

The baselines of the paper's Table 3 come straight from torchvision with their
classifier replaced by a `num_classes` head. Each entry records its natural
input size (Inception v3 wants 299).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def create_model(
    name: str,
    num_classes: int = 3,
    pretrained: str | Path | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build a registry model with a `num_classes` head.

    `kwargs` go to the builder (only ds_resnet50 takes any: simam_lambda,
    depthwise, fusion, dilation). `pretrained` is a local torchvision ResNet50
    ImageNet weights file (or "hub" for the torch hub cache); the load report is
    attached as `model.init_report`. `pretrained="isic2017"` returns the shipped,
    trained reference model (`dsedge.models.weights`) in eval mode.
    """
    spec = get_spec(name)
    if kwargs and name != "ds_resnet50":
        raise ModelError(f"model '{name}' takes no options, got {sorted(kwargs)}")
    try:
        model = spec.build(num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise ModelError(f"cannot build '{name}': {e}") from e
    if pretrained is not None and str(pretrained) in shipped_names():
        return _load_shipped(name, num_classes, str(pretrained), kwargs)
    if pretrained is not None:
        if not spec.imagenet_init:
            raise ModelError(
                f"ImageNet init is implemented for ds_resnet50 and resnet50, not '{name}'"
            )
        from dsedge.models.init import load_imagenet_resnet50

        model.init_report = load_imagenet_resnet50(model, None if pretrained == "hub" else pretrained)
    return model


def shipped_names() -> set[str]:
    from dsedge.models.weights import SHIPPED

    return set(SHIPPED)


def _load_shipped(name: str, num_classes: int, weights: str, kwargs: dict[str, object]) -> nn.Module:
    from dsedge.models.checkpoint import load_checkpoint
    from dsedge.models.weights import SHIPPED

    model_name = SHIPPED[weights][0]
    if name != model_name or kwargs:
        raise ModelError(f"the '{weights}' weights are for {model_name} with its stored options, not '{name}'")
    model, meta = load_checkpoint(weights)
    if meta["num_classes"] != num_classes:
        raise ModelError(f"the '{weights}' weights have {meta['num_classes']} classes ({', '.join(meta['classes'])}), "
                         f"not {num_classes}", hint="fine-tune with `dsedge train --init-from isic2017`")
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int) -> int:
    """FLOPs (2 x multiply-accumulates of convs and matmuls) for one image, via torch's counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, input_size, input_size))
    return int(counter.get_total_flops())


def list_models(with_flops: bool = True) -> list[dict[str, object]]:
    """One row per registry model: name, input size, parameters, GFLOPs (3-class heads)."""
    rows = []
    for spec in MODELS.values():
        model = spec.build(num_classes=3)
        row: dict[str, object] = {
            "name": spec.name,
            "input_size": spec.input_size,
            "params_m": count_parameters(model) / 1e6,
            "description": spec.description,
        }
        if with_flops:
            flops = count_flops(model, spec.input_size)
            row["gflops"] = flops / 1e9
            row["gmacs"] = flops / 2e9
        rows.append(row)
    return rows


def list_shipped(with_flops: bool = True) -> list[dict[str, object]]:
    """One row per shipped weights (`pretrained=NAME`), at the input size they were trained and run at."""
    from dsedge.models.weights import SHIPPED, shipped_meta

    rows = []
    for name, (model_name, _) in SHIPPED.items():
        meta = shipped_meta(name)
        if meta is None:
            continue
        size = int(meta.get("input_size") or MODELS[model_name].input_size)
        model = MODELS[model_name].build(num_classes=int(meta.get("num_classes", 3)))
        auc = (meta.get("metrics") or {}).get("mel_auc")
        row: dict[str, object] = {
            "name": name, "input_size": size,
            "params_m": count_parameters(model) / 1e6,
            "description": f"{model_name} shipped weights (pretrained='{name}'), epoch {meta.get('epoch')}"
                           + (f", val MEL AUC {auc:.3f}" if auc is not None else ""),
        }
        if with_flops:
            flops = count_flops(model, size)
            row["gflops"], row["gmacs"] = flops / 1e9, flops / 2e9
        rows.append(row)
    return rows
