"""ImageNet init: a saved torchvision ResNet50 state dict maps onto ds_resnet50 and resnet50."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from dsedge.errors import ModelError
from dsedge.models.zoo import create_model


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    sd = torchvision.models.resnet50().state_dict()  # 1000-class head, like the real file
    path = tmp_path_factory.mktemp("w") / "resnet50-11ad3fa6.pth"
    torch.save(sd, path)
    return path, sd


def test_ds_resnet50_maps_every_matching_tensor(imagenet_file: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, sd = imagenet_file
    model = create_model("ds_resnet50", pretrained=path)
    report = model.init_report
    state = model.state_dict()
    for name in report.loaded:
        assert torch.equal(state[name], sd[name]), name
    # stem, 1x1 convs, their BNs, shortcuts: everything with the same name and shape
    expected = [n for n in state if n in sd and sd[n].shape == state[n].shape]
    assert sorted(report.loaded) == sorted(expected)
    assert "conv1.weight" in report.loaded and "layer3.2.conv3.weight" in report.loaded
    assert "layer1.0.downsample.0.weight" in report.loaded
    assert "fc.weight" in report.shape_mismatch  # 1000 vs 3 classes
    assert any(n.startswith("layer1.0.dual.conv_d1") for n in report.missing_in_source)
    assert "layer1.0.conv2.weight" in report.unused_in_source  # torchvision's full 3x3 has no home
    assert "loaded" in report.summary()


def test_resnet50_loads_all_but_the_head(imagenet_file: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, sd = imagenet_file
    report = create_model("resnet50", pretrained=path).init_report
    assert report.shape_mismatch == ["fc.weight", "fc.bias"]
    assert len(report.loaded) == len(sd) - 2


def test_missing_file_explains_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError) as e:
        create_model("ds_resnet50", pretrained=tmp_path / "nope.pth")
    assert "download" in (e.value.hint or "")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="hub cache"):
        create_model("ds_resnet50", pretrained="hub")


def test_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        create_model("resnet50", pretrained=bad)
