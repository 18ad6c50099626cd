"""Heat-map overlays: normalisation, colour ramp, the model's view geometry, evidence where it should be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cam_bundle import make_cam_bundle
from PIL import Image

from dsedge.config import PreprocessConfig
from dsedge.runtime import Predictor, preprocess_files
from dsedge.runtime.heatmap import colorize, model_view, normalise, overlay, write_overlay

CFG = PreprocessConfig().to_dict()


def test_normalise_and_colour_ramp() -> None:
    heat = normalise(np.array([[2.0, 4.0], [6.0, 10.0]]))
    assert heat.min() == 0 and heat.max() == 1
    assert not normalise(np.full((3, 3), 5.0)).any()
    rgb = colorize(np.array([[0.0, 1.0]]))
    assert rgb[0, 0, 2] > 100 and rgb[0, 0, 0] == 0  # cold = blue
    assert rgb[0, 1, 0] > 200 and rgb[0, 1, 2] == 0  # hot = red


def test_overlay_is_drawn_on_the_models_view() -> None:
    img = Image.new("RGB", (640, 480), (120, 100, 90))
    assert model_view(img, CFG).size == (224, 224)
    cam = np.zeros((7, 7), np.float32)
    cam[:, 4:] = 1.0
    out = np.asarray(overlay(img, cam, CFG), dtype=np.float32)
    assert out.shape == (224, 224, 3)
    assert out[:, 200:, 0].mean() > out[:, :20, 0].mean() + 50  # hot (red) on the right


def test_engine_cam_points_at_the_evidence(tmp_path: Path) -> None:
    bundle = make_cam_bundle(tmp_path / "bundle")
    arr = np.full((160, 200, 3), (60, 160, 60), np.uint8)
    arr[:, 100:] = (230, 40, 40)  # red half: the tiny model's MEL row weighs red up
    path = tmp_path / "half.png"
    Image.fromarray(arr).save(path)
    with Predictor(bundle) as p:
        cam = p.infer(preprocess_files([path], p.preprocessing))["cam"][0, 0]
    assert cam[:, 24:].mean() > cam[:, :8].mean()
    out = write_overlay(tmp_path / "o" / "half.png", Image.open(path).convert("RGB"), cam, p.preprocessing)
    assert Image.open(out).size == (32, 32)
