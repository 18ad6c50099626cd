"""Heat-map overlays: normalisation, colour ramp, the crop mapped back onto the full image, a colour
bar with raw values, raw CAM values in the result, and warnings when the peak sits on an artefact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cam_bundle import make_cam_bundle
from lesion_images import lesion_image
from PIL import Image

from dsedge.config import PreprocessConfig
from dsedge.runtime import Predictor, preprocess_files
from dsedge.runtime.heatmap import (
    BAR_WIDTH,
    MAX_DRAW_SIDE,
    artefact_warnings,
    colorize,
    crop_box,
    heat_on_image,
    normalise,
    overlay,
    write_overlay,
)

CFG = PreprocessConfig(resize=128, crop=112).to_dict()  # the shipped model's geometry


def test_normalise_and_colour_ramp() -> None:
    heat = normalise(np.array([[2.0, 4.0], [6.0, 10.0]]))
    assert heat.min() == 0 and heat.max() == 1
    assert not normalise(np.full((3, 3), 5.0)).any()
    rgb = colorize(np.array([[0.0, 1.0]]))
    assert rgb[0, 0, 2] > 100 and rgb[0, 0, 0] == 0  # cold = blue
    assert rgb[0, 1, 0] > 200 and rgb[0, 1, 2] == 0  # hot = red


def test_crop_box_maps_the_models_view_back_to_the_original() -> None:
    # 640x480 -> shorter side 128: 170x128, centre crop 112 at (29, 8) -> x 5/1.333... in original pixels
    left, top, right, bottom = crop_box(640, 480, CFG)
    assert right - left == pytest.approx(112 * 480 / 128, abs=3) and bottom - top == pytest.approx(420, abs=1)
    assert (left + right) / 2 == pytest.approx(320, abs=3) and (top + bottom) / 2 == pytest.approx(240, abs=3)


def test_overlay_is_the_full_image_smooth_with_a_colour_bar() -> None:
    img = Image.new("RGB", (640, 480), (120, 100, 90))
    cam = np.zeros((4, 4), np.float32)
    cam[:, 2:] = 3.0
    out = overlay(img, cam, CFG, label="MEL")
    assert out.size == (640 + BAR_WIDTH, 480)  # the full image, not the 112 px crop
    arr = np.asarray(out, dtype=np.float32)
    left, top, right, bottom = (round(v) for v in crop_box(640, 480, CFG))
    assert arr[240, right - 20, 0] > arr[240, left + 20, 0] + 50  # hot (red) on the right of the crop
    row = arr[240, left + 5:right - 5, 0]
    assert len(np.unique(row.astype(int))) > 30  # bilinear: a smooth ramp, not 4 flat cells
    assert abs(arr[240, 2] - np.array([60, 50, 45])).max() <= 2  # outside the crop: dimmed, not coloured
    bar = arr[:, 640 + 8:640 + 24]
    assert bar[45, 2:-2, 0].mean() > 150 and bar[430, 2:-2, 2].mean() > 100  # red on top, blue at the bottom
    heat, _ = heat_on_image(img, cam, CFG)
    assert np.isnan(heat[:, :5]).all() and np.nanmax(heat) == pytest.approx(1.0)


def test_big_images_are_drawn_at_a_bounded_size(tmp_path: Path) -> None:
    img = Image.new("RGB", (3000, 2000), (150, 110, 100))
    out = write_overlay(tmp_path / "o.png", img, np.eye(4, dtype=np.float32), CFG)
    assert Image.open(out).size == (MAX_DRAW_SIDE + BAR_WIDTH, round(2000 * MAX_DRAW_SIDE / 3000))


def _peak_at(row: int, col: int) -> np.ndarray:
    cam = np.zeros((4, 4), np.float32)
    cam[row, col] = 1.0
    return cam


def test_warning_when_the_peak_sits_on_a_sticker() -> None:
    arr = np.asarray(lesion_image((256, 256)), dtype=np.uint8).copy()
    yy, xx = np.mgrid[0:256, 0:256]
    # crop (16, 16)-(240, 240), 56 px cells: cell (1, 2) is centred on (156, 100)
    arr[np.hypot(xx - 156, yy - 100) < 24] = (40, 170, 90)  # a green round sticker there
    img = Image.fromarray(arr)
    on_sticker = artefact_warnings(img, _peak_at(1, 2), CFG)
    assert len(on_sticker) == 1 and "sticker" in on_sticker[0]
    assert artefact_warnings(img, _peak_at(2, 1), CFG) == []  # the peak on the lesion: no warning


def test_warning_when_the_peak_sits_at_the_border() -> None:
    img = lesion_image((256, 256))
    square = PreprocessConfig(resize=112, crop=112).to_dict()  # the crop is the whole image
    at_border = artefact_warnings(img, _peak_at(0, 0), square)
    assert len(at_border) == 1 and "border" in at_border[0]
    assert artefact_warnings(img, np.full((4, 4), 2.0, np.float32), square) == []  # flat map: nothing to say
    assert artefact_warnings(img, _peak_at(0, 1), square) == []  # an edge cell may be an off-centre lesion


def test_engine_cam_in_the_result_and_overlay(tmp_path: Path) -> None:
    bundle = make_cam_bundle(tmp_path / "bundle")
    arr = np.asarray(lesion_image((200, 160)), dtype=np.uint8).copy()
    arr[:, 100:, 0] = np.minimum(255, arr[:, 100:, 0].astype(int) + 40)  # redder right half: MEL weighs red up
    path = tmp_path / "half.png"
    Image.fromarray(arr).save(path)
    with Predictor(bundle) as p:
        cam = p.infer(preprocess_files([path], p.preprocessing))["cam"][0, 0]
        (r,) = p.predict([path], heatmaps=tmp_path / "maps")
    assert cam[:, 24:].mean() > cam[:, :8].mean()
    assert Image.open(r["heatmap"]).size == (200 + BAR_WIDTH, 160)
    raw = r["cam"]
    assert raw["grid"] == [32, 32] and len(raw["values"]) == 32 and raw["class"] in ("MEL", "NV", "SK")
    assert raw["peak"]["value"] == pytest.approx(max(max(row) for row in raw["values"]), abs=1e-4)
    assert 0 <= raw["crop_box"][0] < raw["crop_box"][2] <= 200 and isinstance(raw["warnings"], list)
