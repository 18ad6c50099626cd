"""Registry: every model builds with a 3-class head at its input size; errors are clear."""

from __future__ import annotations

import pytest
import torch

from dsedge.errors import ModelError
from dsedge.models.zoo import MODELS, count_flops, create_model, get_spec


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registry_model_has_three_class_head(name: str) -> None:
    model = create_model(name, num_classes=3).eval()
    size = get_spec(name).input_size
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 3)


def test_inception_wants_299() -> None:
    assert get_spec("inception_v3").input_size == 299


def test_resnet50_flops_match_published_value() -> None:
    # torchvision ResNet50: 4.09 GMACs at 224 (the 1000-class head adds ~2M MACs; ours has 3 classes).
    gmacs = count_flops(create_model("resnet50"), 224) / 2e9
    assert 4.0 < gmacs < 4.2


def test_unknown_model_and_bad_options() -> None:
    with pytest.raises(ModelError, match="unknown model"):
        create_model("resnet51")
    with pytest.raises(ModelError, match="takes no options"):
        create_model("vgg16", simam_lambda=0.1)
    with pytest.raises(ModelError, match="ImageNet init"):
        create_model("vgg16", pretrained="x.pth")
