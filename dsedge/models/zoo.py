"""Model registry: `create_model(name, num_classes, pretrained)` for DS-ResNet50 and the paper's baselines.

The baselines of the paper's Table 3 come straight from torchvision with their
classifier replaced by a `num_classes` head. Each entry records its natural
input size (Inception v3 wants 299).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dsedge.errors import ModelError
from dsedge.models.specs import MODELS, ModelSpec, build_model, get_spec  # noqa: F401 - ModelSpec re-exported


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
    model = build_model(name, num_classes, **kwargs)
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
    from dsedge.models.shipped import SHIPPED

    return set(SHIPPED)


def _load_shipped(name: str, num_classes: int, weights: str, kwargs: dict[str, object]) -> nn.Module:
    from dsedge.models.checkpoint import load_checkpoint
    from dsedge.models.shipped import SHIPPED

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
    from dsedge.models.shipped import SHIPPED, shipped_meta

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
