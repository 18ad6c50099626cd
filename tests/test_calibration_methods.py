"""`--method auto`: per tensor, the calibration range with the smallest INT8 error on held-out images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dsedge.bundle import load_bundle
from dsedge.calibration import methods as per_tensor
from dsedge.calibration.int8 import calibrate_bundle, ranges_minmax
from dsedge.calibration.rules import check_qdq_rules


def test_error_prefers_a_clipped_range_for_a_long_tail_and_the_full_range_for_uniform_data() -> None:
    rng = np.random.default_rng(0)
    tail = np.concatenate([rng.normal(0, 1, 1_000_000), [50.0]]).astype(np.float32)
    assert per_tensor.symmetric_int8_mse(tail, -4, 4) < per_tensor.symmetric_int8_mse(tail, -50, 50)
    flat = rng.uniform(-1, 1, 100_000).astype(np.float32)
    assert per_tensor.symmetric_int8_mse(flat, -1, 1) < per_tensor.symmetric_int8_mse(flat, -0.5, 0.5)
    assert per_tensor.symmetric_int8_mse(flat, 0, 0) == pytest.approx(float(np.sum(flat.astype(np.float64) ** 2)))


def test_choice_ties_and_merged_cache(tmp_path: Path) -> None:
    errors = {"a": {"entropy": 2.0, "percentile": 1.0, "minmax": 3.0}, "b": {"entropy": 1.0, "percentile": 1.0,
                                                                             "minmax": 1.0}}
    choice = per_tensor.choose_per_tensor(errors)
    assert choice == {"a": "percentile", "b": "entropy"}  # a tie goes to the earlier candidate
    ranges = {"entropy": {"a": (-1.0, 1.0), "b": (-2.0, 2.0)}, "percentile": {"a": (-0.5, 0.5), "b": (-3.0, 3.0)},
              "minmax": {"a": (-9.0, 9.0), "b": (-9.0, 9.0)}}
    path = per_tensor.write_merged_ranges(ranges, choice, tmp_path / "r.json")
    assert ranges_minmax(path) == {"a": (-0.5, 0.5), "b": (-2.0, 2.0)}
    assert per_tensor.summarize(choice) == {"entropy": 1, "percentile": 1}


def test_tensor_errors_runs_the_model_with_every_tensor_exposed(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    ranges = {"wide": {"r": (0.0, 100.0), "y": (-100.0, 0.0)}, "tight": {"r": (0.0, 1.0), "y": (-1.0, 0.0)}}
    x = np.random.default_rng(0).uniform(-1, 1, (8, 4)).astype(np.float32)
    errors = per_tensor.tensor_errors(tmp_path / "m.onnx", ranges, [x[:4], x[4:]], tmp_path)
    assert set(errors) == {"r", "y"}
    assert per_tensor.choose_per_tensor(errors, ("wide", "tight")) == {"r": "tight", "y": "tight"}


def test_auto_calibration_end_to_end(tmp_path: Path, tiny_isic_session: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsedge.calibration import int8
    from dsedge.export.bundle import export_bundle

    # TensorRT's entropy settings (2,048 bins) cost ORT's pure-Python KL search ~160 s per model on
    # 2 cores, whatever the image count; the wiring under test does not depend on the bin count
    monkeypatch.setitem(int8.CALIBRATOR_OPTIONS, "entropy", {"num_bins": 256, "num_quantized_bins": 128})

    bundle = export_bundle(None, tmp_path / "b", model_name="ds_resnet50", random_init=True, image_size=32)
    result = calibrate_bundle(bundle, tiny_isic_session, method="auto", num_images=8, select_images=8,
                              sensitivity=False, max_acc_drop=100.0, mixed_fp16=False)
    rec = load_bundle(bundle).manifest["calibration"]
    assert rec["method"] == "auto" and result["per_tensor_methods"]["select_images"] == 8
    counts = rec["per_tensor_methods"]["tensors_per_method"]
    assert set(counts) <= set(per_tensor.CANDIDATES) and sum(counts.values()) > 100
    assert check_qdq_rules(bundle / "model.int8.onnx") == []
    json.dumps(rec)  # the manifest record stays JSON
