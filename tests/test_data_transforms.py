"""Preprocessing definition and the paper's augmentation."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from dsedge.config import PreprocessConfig
from dsedge.data.transforms import RandomRot90, eval_transform, train_transform
from dsedge.errors import DsedgeError


def test_eval_transform_shape_and_normalisation() -> None:
    img = Image.new("RGB", (300, 260), (124, 116, 104))  # ~ImageNet mean colour
    x = eval_transform(PreprocessConfig())(img)
    assert x.shape == (3, 224, 224)
    assert x.abs().max() < 0.02


def test_train_transform_shape_and_randomness() -> None:
    img = Image.linear_gradient("L").convert("RGB").resize((80, 64))
    cfg = PreprocessConfig(resize=48, crop=40)
    t = train_transform(cfg)
    torch.manual_seed(0)
    random.seed(0)
    outs = [t(img) for _ in range(6)]
    assert all(o.shape == (3, 40, 40) for o in outs)
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])


def test_rot90_is_lossless() -> None:
    img = Image.linear_gradient("L").convert("RGB").resize((10, 6))
    random.seed(3)
    sizes = {RandomRot90()(img).size for _ in range(20)}
    assert sizes == {(10, 6), (6, 10)}


def test_config_validation_and_roundtrip() -> None:
    cfg = PreprocessConfig.for_size(299)
    assert (cfg.resize, cfg.crop) == (342, 299)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DsedgeError):
        PreprocessConfig(resize=100, crop=224)
