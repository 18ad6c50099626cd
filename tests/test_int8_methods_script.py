"""benchmarks/int8_methods.py: its latency rows come from the bench's machinery, its targets and table say
what the numbers say (no model, no data: fake runners and hand-written results)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

from dsedge.bench.rounds import RoundPlan
from dsedge.engines.base import Runner, RunnerInfo

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("int8_methods", ROOT / "benchmarks" / "int8_methods.py")
im = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(im)


class SleepRunner(Runner):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("fake", "fp32", "cpu", "0")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return np.zeros((len(batch), 3), np.float32)


def test_latency_rows_use_the_bench_rounds_and_compare_with_eager_and_nncf() -> None:
    runners = {im.REFERENCE: SleepRunner(0.030), "openvino fp32": SleepRunner(0.010),
               "openvino int8 nncf": SleepRunner(0.006), "openvino int8 ptq": SleepRunner(0.002)}
    plan = RoundPlan(rounds=5, min_rounds=5, iters=2, warmup=0)
    lat = im.interleaved_latency(runners, np.zeros((1, 3, 4, 4), np.float32), plan, guard_seconds=0.0)
    assert lat["measurement"]["rounds"] == 5 and lat["plan"]["rounds"] == 5
    rows = lat["rows"]
    assert set(rows) == set(runners)
    ref = rows[im.REFERENCE]
    assert ref["speedup"] == 1.0 and ref["speedup_ci95"] == [1.0, 1.0]
    assert len(ref["latency"]["round_medians_ms"]) == 5 and ref["latency"]["host"]["iters"] == 10
    assert ref["latency"]["host"]["p50_ms"] >= 30.0
    ptq, nncf = rows["openvino int8 ptq"], rows["openvino int8 nncf"]
    # sleeps only overshoot: 30 ms / (2 ms + overshoot) is above 1 and at most 15
    assert 1.5 < ptq["speedup"] <= 15.5 and len(ptq["speedup_rounds"]) == 5
    assert ptq["speedup_ci95"][0] <= ptq["speedup"] <= ptq["speedup_ci95"][1]
    assert 1.0 < ptq["vs_nncf"]["median"] <= 3.5  # ptq (2 ms) is faster than nncf (6 ms) in the same rounds
    assert "vs_nncf" not in nncf and "vs_nncf" not in rows["openvino fp32"] and "vs_nncf" not in ref
    assert {"unstable", "reasons", "spread"} <= set(ptq["stability"])


def _lat(p50: float, spread: float, speedup: float, ci: list[float], unstable: bool = False,
         vs_nncf: list[float] | None = None) -> dict:
    row = {"latency": {"host": {"p50_ms": p50, "spread": spread}}, "speedup": speedup, "speedup_ci95": ci,
           "stability": {"unstable": unstable,
                         "reasons": ["machine busy: load", "spread IQR/p50 30% > 15%"] if unstable else []}}
    if vs_nncf is not None:
        row["vs_nncf"] = {"median": vs_nncf[1], "ci95": [vs_nncf[0], vs_nncf[2]]}
    return row


def _acc(agree: float, dacc: float = 0.0) -> dict:
    return {"top1_agreement": agree, "delta_acc_points": dacc, "delta_mel_auc": 0.001, "delta_sk_auc": -0.002,
            "delta_mean_auc": -0.0005, "max_abs_prob_diff": 0.05}


def _result() -> dict:
    rows = {im.REFERENCE: _lat(60.0, 0.05, 1.0, [1.0, 1.0]),
            "openvino fp32": _lat(20.0, 0.04, 3.0, [2.9, 3.1]),
            "openvino int8 ptq": _lat(10.0, 0.03, 6.0, [5.5, 6.5], vs_nncf=[1.05, 1.1, 1.2]),
            "openvino int8 ptq-keep-fp": _lat(15.0, 0.03, 4.0, [3.8, 4.2], vs_nncf=[0.8, 0.85, 0.9]),
            "openvino int8 ptq-auto": _lat(11.0, 0.30, 5.5, [4.0, 7.0], unstable=True, vs_nncf=[0.9, 1.0, 1.1]),
            "openvino int8 nncf": _lat(11.0, 0.03, 5.2, [5.0, 5.4])}
    views = {"views": 8, "inputs": 1200, "top1_agreement": 0.9925, "ci95": [0.985, 1.0], "flips": 9,
             "images_with_a_flip": 3}
    methods = {"ptq": {"openvino": {**_acc(0.98, -0.0), "views": views}, "onnxruntime": _acc(0.96, -0.67)},
               "ptq-keep-fp": {"openvino": _acc(0.99)}, "ptq-auto": {"openvino": _acc(0.99)},
               "nncf": {"openvino": _acc(0.9667, -0.67)}, "qat": {"error": "no --qat-checkpoint given"}}
    return {"machine": {"model": "Test CPU"}, "image_size": 224, "threads": 2, "calibration_images": 512,
            "eval_images": 150, "eval_split": "val", "latency_only": False, "notes": ["a note"], "methods": methods,
            "latency": {"rows": rows, "machine": {"busy": False, "reasons": []},
                        "measurement": {"rounds": 40, "stopped_by": "rounds", "seconds": 12.5},
                        "plan": {"round_ms": 200.0, "warmup": 3, "gap_ms": 50.0, "settle": 1}}}


def test_targets_judge_speed_and_agreement_against_nncf() -> None:
    t = im.targets(_result())
    assert t["ptq"] == {"speedup_vs_eager": 6.0, "speedup_ci95": [5.5, 6.5], "5x_eager": "met",
                        "latency_vs_nncf": "faster", "agreement_vs_nncf": "met"}
    # agrees more than NNCF but its interval says slower than NNCF: not met; 4x: not met
    assert t["ptq-keep-fp"]["5x_eager"] == "not met" and t["ptq-keep-fp"]["latency_vs_nncf"] == "slower"
    assert t["ptq-keep-fp"]["agreement_vs_nncf"] == "not met"
    assert t["ptq-auto"]["5x_eager"] == "unstable" and t["ptq-auto"]["agreement_vs_nncf"] == "unstable"
    assert t["ptq-auto"]["latency_vs_nncf"] == "same"
    assert t["nncf"] == {"speedup_vs_eager": 5.2, "speedup_ci95": [5.0, 5.4], "5x_eager": "met"}
    assert t["qat"] == {"latency_vs_nncf": None, "agreement_vs_nncf": "not measured"}


def test_targets_without_accuracy_or_latency() -> None:
    res = _result()
    for row in res["methods"].values():
        row.pop("openvino", None)
    t = im.targets(res)
    assert t["ptq"]["agreement_vs_nncf"] == "not measured" and t["ptq"]["5x_eager"] == "met"
    res.pop("latency")
    assert im.targets(res)["ptq"] == {"latency_vs_nncf": None, "agreement_vs_nncf": "not measured"}


def test_markdown_table_has_latency_columns_and_targets() -> None:
    res = _result()
    res["targets"] = im.targets(res)
    md = im.to_markdown(res)
    lines = md.splitlines()
    assert "| p50 ms | IQR/p50 | x torch eager [95% CI] | x NNCF INT8 [95% CI] | stability |" in md
    assert ("| FP32 | PyTorch eager (reference) | – | – | – | – | – | – | 60.00 | 5.0% | 1.00x [1.00-1.00] | – "
            "| stable |") in lines
    assert ("| ptq | OpenVINO INT8 | 98.00 | 99.25 [98.50-100.00] (9 of 1200; 3 images) | +0.00 | +0.0010 | -0.0020 | -0.0005 | 10.00 | 3.0% "
            "| 6.00x [5.50-6.50] | 1.10x [1.05-1.20] | stable |") in lines
    assert ("| ptq (same file) | ONNX Runtime | 96.00 | – | -0.67 | +0.0010 | -0.0020 | -0.0005 | – | – | – | – "
            "| – |") in lines
    assert any(ln.startswith("| ptq-auto | OpenVINO INT8 |")
               and ln.endswith("| UNSTABLE: machine busy; spread IQR/p50 30% > 15% |") for ln in lines)
    assert "| qat | – | no --qat-checkpoint given |" in md
    assert "agreement over views % [95% CI]" in md
    assert "Note: a note." in md and "40 interleaved rounds" in md and "Machine: idle." in md
    assert "each turn after a 50 ms idle gap and 1 untimed call(s)" in md
    assert ("- ptq: >= 5x eager: met (6.00x [5.50-6.50]); agreement >= NNCF at no worse latency: met "
            "(latency vs NNCF: faster)") in lines
    assert "- nncf: >= 5x eager: met (5.20x [5.00-5.40])" in lines
    # every table row has the header's number of cells
    table = [ln for ln in lines if ln.startswith("|")]
    assert len({ln.count("|") for ln in table}) == 1


def test_markdown_latency_only() -> None:
    res = _result()
    res["latency_only"] = True
    for row in res["methods"].values():
        row.pop("openvino", None)
        row.pop("onnxruntime", None)
    md = im.to_markdown(res)
    assert "accuracy not measured (--latency-only)" in md
    assert "| ptq | OpenVINO INT8 | – | – | – | – | – | – | 10.00 | 3.0% | 6.00x [5.50-6.50] |" in md


@pytest.mark.parametrize("argv", [
    ["--data", "d"],  # neither --bundle nor --checkpoint
    ["--data", "d", "--bundle", "b", "--image-size", "224"],
    ["--data", "d", "--checkpoint", "isic2017", "--methods", "ptq,bogus"],
    ["--data", "d", "--checkpoint", "isic2017", "--latency-only", "--skip-latency"],
    ["--data", "d", "--checkpoint", "isic2017", "--int8", "no-equals-sign"],
    ["--data", "d", "--checkpoint", "isic2017", "--int8", "calibrate=/no/such/model.int8.onnx"],
])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        im.parse_args(argv)
    assert e.value.code == 2


def test_arguments_and_round_plan() -> None:
    args = im.parse_args(["--data", "d", "--checkpoint", "isic2017", "--image-size", "224", "--latency-only",
                          "--rounds", "4", "--min-rounds", "10", "--round-ms", "50"])
    plan = im.round_plan(args)
    assert (plan.rounds, plan.min_rounds, plan.round_ms, plan.warmup) == (4, 4, 50.0, 3)
    assert args.image_size == 224 and args.latency_only and args.methods.split(",") == list(im.ALL_METHODS)


def test_reuse_stamp_matches_only_the_same_recipe(tmp_path: Path) -> None:
    recipe = {"method": "ptq", "num_images": 512, "seed": 0}
    im._write_stamp(tmp_path, recipe, {"calibrate_seconds": 70.0})
    assert im._stamp_ok(tmp_path, recipe) == {"calibrate_seconds": 70.0}
    assert im._stamp_ok(tmp_path, {**recipe, "num_images": 256}) is None
    assert im._stamp_ok(tmp_path / "missing", recipe) is None


def test_view_agreement_counts_flips_per_image() -> None:
    ref = np.tile(np.array([[0.6, 0.3, 0.1]]), (24, 1))  # 3 images x 8 views
    probs = ref.copy()
    probs[[1, 2, 17]] = [0.1, 0.8, 0.1]  # two views of image 0, one of image 2
    v = im.view_agreement(ref, probs, 8)
    assert v["inputs"] == 24 and v["flips"] == 3 and v["images_with_a_flip"] == 2
    assert v["top1_agreement"] == pytest.approx(21 / 24) and v["ci95"][0] < 21 / 24 <= v["ci95"][1]


def test_view_agreement_reports_how_confident_the_flipped_decisions_were() -> None:
    ref = np.tile(np.array([[0.5, 0.45, 0.05]]), (16, 1))
    ref[9] = [0.8, 0.1, 0.1]  # a confident FP32 decision...
    probs = ref.copy()
    probs[[2, 9]] = [0.1, 0.8, 0.1]  # ...flipped, and a near-tie flipped
    v = im.view_agreement(ref, probs, 8)
    assert v["max_flip_margin"] == pytest.approx(0.7) and v["confident_flips"] == 1
    assert im.view_agreement(ref, ref, 8)["max_flip_margin"] is None
    np.testing.assert_allclose(im.top2_margin(ref[:2]), [0.05, 0.05])


def test_an_existing_int8_file_is_a_row_with_its_bundles_calibration(tmp_path: Path) -> None:
    (tmp_path / "model.int8.onnx").write_bytes(b"x")
    (tmp_path / "dsedge.json").write_text(json.dumps({"calibration": {
        "method": "percentile", "search": "grow", "kept_float_groups": ["layer1.0.bn1", "head"],
        "int8_mac_fraction": {"fraction": 0.91}}}))
    args = im.parse_args(["--data", "d", "--checkpoint", "isic2017", "--methods", "nncf",
                          "--int8", f"calibrate={tmp_path / 'model.int8.onnx'}"])
    assert args.int8 == [f"calibrate={tmp_path / 'model.int8.onnx'}"]
    path, note = im.existing_int8(tmp_path / "model.int8.onnx")
    assert path == tmp_path / "model.int8.onnx"
    assert note["search"] == "grow" and note["int8_mac_fraction"] == 0.91 and "head" in note["kept_float_groups"]


def test_each_method_quantizes_what_it_names() -> None:
    """ptq: every conv but the head; qat: only what `dsedge qat` fine-tuned in INT8; budget rows: calibrate's default."""
    import argparse

    args = argparse.Namespace(keep_fp="layer1")
    assert im._keep_fp("ptq", args) == "head" and im._keep_fp("ptq-auto", args) == "head"
    assert im._keep_fp("qat", args) == ("depthwise", "head")
    assert im._keep_fp("ptq-budget", args) == ("depthwise",) == im._keep_fp("qat-budget", args)
    assert im._keep_fp("ptq-keep-fp", args) == "layer1"
