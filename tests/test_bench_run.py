"""run_bench end to end on CPU at tiny sizes: rows, keys, reference, rounds, accuracy block, skips, files,
progress phases, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dsedge.bench import run as bench_run
from dsedge.bench import sources
from dsedge.bench.progress import BenchProgress
from dsedge.bench.rounds import RoundPlan
from dsedge.bench.run import plan_runners, run_bench
from dsedge.engines import registry
from dsedge.engines.base import Runner, RunnerInfo
from dsedge.errors import DsedgeError

SIZE = 32
BATCHES = (1, 2)
QUICK = RoundPlan(rounds=3, min_rounds=3, iters=2)
PHASES: list[str] = []


class NullRunner(Runner):
    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("null", "fp32", "cpu", "0")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), 3), np.float32)


class RecordingProgress(BenchProgress):
    """The real progress display, with every phase name kept for the test."""

    def __init__(self, console: Any, enabled: bool = True) -> None:
        super().__init__(console, enabled)
        self.phases = PHASES


def _rows(result: dict[str, Any], backend: str, precision: str) -> list[dict[str, Any]]:
    return [r for r in result["rows"] if r["backend"] == backend and r["precision"] == precision]


@pytest.fixture(scope="module")
def default_run(tiny_isic_session: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The embedded default job (random-init bundle, synthetic INT8) at 32 px; the tiny data set comes from
    $DSEDGE_ISIC2017, as in `make bench`."""
    out = tmp_path_factory.mktemp("bench") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sources, "shipped_checkpoint", lambda: None)  # as if no trained model were shipped
        mp.setattr(bench_run, "BenchProgress", RecordingProgress)
        mp.setenv("DSEDGE_ISIC2017", str(tiny_isic_session))
        result = run_bench(None, backends="torch,onnxruntime,openvino,tensorrt", batch_sizes=BATCHES, plan=QUICK,
                           image_size=SIZE, split="val", out=out, guard_seconds=0.1)
    result["_out"] = out
    return result


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from dsedge.models.checkpoint import save_checkpoint
    from dsedge.models.zoo import create_model

    torch.manual_seed(5)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "ck", create_model("ds_resnet50"),
                           {"model": "ds_resnet50", "classes": ["MEL", "NV", "SK"], "model_kwargs": {}})


@pytest.fixture(scope="module")
def bundle(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dsedge.export import export_bundle

    return export_bundle(checkpoint, tmp_path_factory.mktemp("b") / "bundle", image_size=32, parity_images=2)


def test_every_expected_row_and_key(default_run: dict[str, Any]) -> None:
    expected = {(b, p, bs) for b in ("torch", "onnxruntime", "openvino", "tensorrt")
                for p in registry.get(b).precisions for bs in BATCHES}
    got = {(r["backend"], r["precision"], r["batch_size"]) for r in default_run["rows"]}
    assert got == expected
    for r in default_run["rows"]:
        assert r["status"] in ("ok", "skipped")
        if r["status"] == "skipped":
            assert r["reason"]
            continue
        h = r["latency"]["host"]
        assert {"mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "throughput", "iters", "iqr_ms",
                "cv", "spread"} <= set(h)
        assert h["iters"] == 6 and h["batch_size"] == r["batch_size"]  # 3 rounds x 2 iterations
        assert len(r["latency"]["round_medians_ms"]) == 3 and r["latency"]["warmup_s"] > 0
        assert r["latency"]["build_s"] > 0  # building (session, compile_model) reported apart from warm-up
        assert h["min_ms"] <= h["p50_ms"] <= h["p90_ms"] <= h["p99_ms"] <= h["max_ms"]
        assert r["speedup"] > 0 and r["runner"]["backend"] == r["backend"]
        assert len(r["speedup_rounds"] or [1.0] * 3) == 3 and isinstance(r["stability"]["unstable"], bool)
        assert r["deployable"] is registry.get(r["backend"]).runtime
    for b, p in (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8"),
                 ("openvino", "fp32"), ("openvino", "int8")):
        assert all(r["status"] == "ok" for r in _rows(default_run, b, p)), (b, p)
    assert default_run["source"]["random_weights"] is True
    assert "random-init" in default_run["source"]["description"]
    assert "INT8 calibrated on 19 training images" in default_run["source"]["description"]  # the data's train split
    assert default_run["source"]["synthetic_inputs"] is True  # latency inputs are random tensors
    assert {"cpu", "cpu_flags", "threads", "gpu", "versions"} <= set(default_run["environment"])
    assert default_run["measurement"]["rounds"] == 3 and default_run["stability"]["rounds_sampled"] == 3
    assert default_run["settings"]["threads"] >= 1  # every backend gets the same, explicit thread count


def test_every_phase_is_announced(default_run: dict[str, Any]) -> None:
    text = "\n".join(PHASES)
    for phase in ("checking that the machine is idle", "exporting", "calibrating INT8", "loading val images",
                  "building torch fp32", "building openvino int8", "warm-up onnxruntime fp32 batch 2",
                  "interleaved rounds", "accuracy pass onnxruntime int8"):
        assert phase in text, phase


def test_reference_row_speedup_is_one(default_run: dict[str, Any]) -> None:
    ref = _rows(default_run, "torch", "fp32")
    assert [r["speedup"] for r in ref] == [1.0, 1.0]
    for bs in BATCHES:
        assert str(bs) in default_run["fastest"]


def test_skipped_rows_say_why(default_run: dict[str, Any]) -> None:
    for r in _rows(default_run, "tensorrt", "fp16") + _rows(default_run, "tensorrt", "int8"):
        if r["status"] == "skipped":  # no TensorRT here: the reason names the package and the extra
            assert "tensorrt" in r["reason"]
    for r in _rows(default_run, "torch", "fp16"):
        assert r["status"] == "skipped" and "fp16" in r["reason"]


def test_accuracy_block_on_tiny_set(default_run: dict[str, Any]) -> None:
    assert default_run["data"]["n"] == 10 and default_run["agreement_reference"] == "torch fp32"
    for r in default_run["rows"]:
        if r["status"] != "ok":
            continue
        a = r["accuracy"]
        assert 0.0 <= a["accuracy"] <= 1.0 and 0.0 <= a["balanced_accuracy"] <= 1.0
        assert set(a["f1"]) == {"MEL", "NV", "SK"} and a["n"] == 10
        assert "mel_auc" in a and "sk_auc" in a
        agree = a["agreement"]
        assert 0.0 <= agree["top1_agreement"] <= 1.0 and agree["max_abs_prob_diff"] >= agree["mean_abs_prob_diff"]
    ref = _rows(default_run, "torch", "fp32")[0]["accuracy"]["agreement"]
    assert ref["top1_agreement"] == 1.0 and ref["max_abs_prob_diff"] == 0.0
    ort = _rows(default_run, "onnxruntime", "fp32")[0]["accuracy"]["agreement"]
    assert ort["top1_agreement"] == 1.0 and ort["max_abs_prob_diff"] < 1e-4  # same weights as the torch rows


def test_files_written(default_run: dict[str, Any]) -> None:
    out: Path = default_run["_out"]
    for name in ("bench.json", "bench.md", "latency.png", "accuracy_latency.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    saved = json.loads((out / "bench.json").read_text())
    assert saved["format"] == "dsedge-bench" and len(saved["rows"]) == len(default_run["rows"])
    md = (out / "bench.md").read_text()
    assert "| torch | fp32 | 1 |" in md and "Skipped:" in md and "random-init" in md


def test_unknown_names_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(DsedgeError, match="unknown backend"):
        plan_runners("torch,tflite", "fp32")
    with pytest.raises(DsedgeError, match="unknown precision"):
        plan_runners("torch", "fp8")
    with pytest.raises(DsedgeError, match="runs precision"):
        plan_runners("tensorrt", "bf16")
    with pytest.raises(DsedgeError, match="reference"):
        run_bench(None, reference="torch", out=tmp_path)
    with pytest.raises(DsedgeError, match="has no option"):
        run_bench(None, options=["openvino.turbo=1"], out=tmp_path)
    assert plan_runners("onnxruntime", "int8")[0] == ("torch", "fp32")  # the reference always runs
    with pytest.raises(DsedgeError, match="batch sizes"):
        run_bench(None, batch_sizes="1,x", out=tmp_path)
    with pytest.raises(DsedgeError, match="batch sizes"):
        run_bench(None, batch_sizes=(0,), out=tmp_path)
    with pytest.raises(DsedgeError, match="device"):
        run_bench(None, device="tpu", out=tmp_path)
    with pytest.raises(DsedgeError, match="data folder"):
        run_bench(None, data=tmp_path / "missing", out=tmp_path)


def test_bundle_without_checkpoint(bundle: Path, tmp_path: Path) -> None:
    """A given bundle without its checkpoint: PyTorch rows run random weights (latency only)."""
    res = run_bench(bundle, backends="onnxruntime", precisions="fp32", batch_sizes=(1,), plan=QUICK, out=tmp_path,
                    guard_seconds=0.1)
    assert res["source"]["random_weights"] is True and res["settings"]["image_size"] == 32  # no --checkpoint
    assert all(r["status"] == "ok" for r in _rows(res, "torch", "fp32"))  # the reference always runs
    assert any("no --checkpoint" in n for n in res["source"]["notes"])


def test_quick_compile_keeps_the_smallest_batch() -> None:
    runners = {("torch-compile", p): NullRunner() for p in ("fp32", "bf16", "fp16")}
    runners[("onnxruntime", "fp32")] = NullRunner()
    inputs = {bs: np.zeros((bs, 3, 4, 4), np.float32) for bs in (1, 2)}
    rows: list[dict[str, Any]] = [{"backend": "openvino", "precision": "fp32", "status": "skipped", "reason": "x"}]
    cells = bench_run._cells(runners, inputs, rows, quick_size=1)
    assert {c.key for c in cells} == {("torch-compile", "fp32", 1), ("torch-compile", "bf16", 1),
                                      ("torch-compile", "fp16", 1), ("onnxruntime", "fp32", 1),
                                      ("onnxruntime", "fp32", 2)}
    quick = [r for r in rows if r["backend"] == "torch-compile"]
    assert {(r["precision"], r["batch_size"]) for r in quick} == {("fp32", 2), ("bf16", 2), ("fp16", 2)}
    assert all("--compile-all" in r["reason"] for r in quick)
    assert {(r["backend"], r["batch_size"]) for r in rows if r["reason"] == "x"} == {("openvino", 1), ("openvino", 2)}


def test_batch_above_engine_profile_is_skipped(bundle: Path, checkpoint: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dsedge.engines.ort_runner import OrtRunner

    real = OrtRunner.from_bundle

    def limited(*args: Any, **kw: Any) -> Any:
        runner = real(*args, **kw)
        runner.max_batch = 1  # like a TensorRT engine built with a max-batch-1 profile
        return runner

    monkeypatch.setattr(OrtRunner, "from_bundle", limited)
    res = run_bench(bundle, checkpoint=checkpoint, backends="onnxruntime", precisions="fp32", batch_sizes=(1, 2),
                    plan=QUICK, out=tmp_path, guard_seconds=0.1)
    assert res["source"]["random_weights"] is False and "checkpoint" in res["source"]["description"]
    by_bs = {r["batch_size"]: r for r in _rows(res, "onnxruntime", "fp32")}
    assert by_bs[1]["status"] == "ok"
    assert by_bs[2]["status"] == "skipped" and "above the engine profile" in by_bs[2]["reason"]
    assert "above the engine profile" in (tmp_path / "bench.md").read_text()


def test_checkpoint_must_be_the_bundles(bundle: Path, tmp_path: Path) -> None:
    import torch

    from dsedge.models.checkpoint import save_checkpoint
    from dsedge.models.zoo import create_model

    torch.manual_seed(6)
    other = save_checkpoint(tmp_path / "other", create_model("ds_resnet50"),
                            {"model": "ds_resnet50", "classes": ["MEL", "NV", "SK"], "model_kwargs": {}})
    with pytest.raises(DsedgeError, match="not the checkpoint this bundle was exported from"):
        run_bench(bundle, checkpoint=other, out=tmp_path / "o")
    with pytest.raises(DsedgeError, match="checkpoint not found"):
        run_bench(bundle, checkpoint=tmp_path / "missing.safetensors", out=tmp_path / "o")
    with pytest.raises(DsedgeError, match="needs a BUNDLE"):
        run_bench(None, checkpoint=other, out=tmp_path / "o")


def test_missing_backend_package_is_a_skipped_row(bundle: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    res = run_bench(bundle, backends="openvino", precisions="fp32", batch_sizes=(1,), plan=QUICK, out=tmp_path,
                    guard_seconds=0.1)
    (row,) = _rows(res, "openvino", "fp32")
    assert row["status"] == "skipped" and "openvino" in row["reason"] and "pip install" in row["reason"]


def test_cli(bundle: Path, tiny_isic_session: Path, tmp_path: Path) -> None:
    """CLI with --data on a bundle without its checkpoint: agreement refers to ONNX Runtime FP32."""
    from dsedge.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["bench", str(bundle), "--backends", "onnxruntime", "--precisions", "fp32",
                             "--batch-sizes", "1", "--rounds", "3", "--min-rounds", "3", "--iters", "1",
                             "--option", "onnxruntime.providers=CPUExecutionProvider", "--data", str(tiny_isic_session),
                             "--out", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.output
    assert "onnxruntime" in ok.output
    res = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert res["agreement_reference"] == "onnxruntime fp32"
    (torch_row,) = _rows(res, "torch", "fp32")
    (ort_row,) = _rows(res, "onnxruntime", "fp32")
    assert torch_row["accuracy"] is None  # random weights: no accuracy claim for them
    assert ort_row["accuracy"]["agreement"]["top1_agreement"] == 1.0
    bad = runner.invoke(app, ["bench", str(bundle), "--backends", "tflite", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "tflite" in str(bad.exception or bad.output)


def test_int8_rows_say_how_much_of_the_file_is_int8() -> None:
    """A file named INT8 with most layers float must not pass for INT8 in a speed table (issue 20)."""
    from dsedge.bench.report import _full_columns
    from dsedge.bench.run import _int8_shares

    rows = [{"runner": {"extra": {"file": "model.int8.onnx"}}}, {"runner": {"extra": {"file": "model.onnx"}}}, {}]
    _int8_shares(rows, {"model.int8.onnx": {"int8_mac_fraction": 0.857}, "model.onnx": {}})
    assert rows[0]["int8_mac_fraction"] == 0.857 and "int8_mac_fraction" not in rows[1] and rows[2] == {}
    host = {k: 1.0 for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "spread", "cv",
                             "throughput")}
    row = {"backend": "openvino", "precision": "int8", "batch_size": 1, "status": "ok", "latency": {"host": host},
           "stability": {"unstable": False}, "speedup": 2.0, "speedup_ci95": [1.9, 2.1], "int8_mac_fraction": 0.857}
    _head, cells = _full_columns({"rows": [row], "data": None})
    assert cells[0][1] == "int8 (86 % MACs INT8)"


def test_end_to_end_split_reaches_bench_md(tmp_path: Path) -> None:
    """bench.md carries the per-image decode / preprocess / infer / post split (issue 23); a bundle
    without golden vectors says why it was not timed instead of failing the bench."""
    from tiny_bundle import make_tiny_bundle

    from dsedge.bench.report import end_to_end_markdown
    from dsedge.bench.run import end_to_end_rows
    from dsedge.export.vectors import write_vectors

    bundle = make_tiny_bundle(tmp_path / "b")
    skipped = end_to_end_rows(bundle)
    assert skipped[0]["skipped"] and "golden vectors" in skipped[0]["skipped"]
    write_vectors(bundle)
    rows = end_to_end_rows(bundle)
    assert rows[0]["backend"] == "onnxruntime" and rows[0]["median"]["decode_ms"] > 0
    assert "| decode | quality | preprocess | infer | post |" in rows[0]["markdown"].replace("  ", " ")
    text = "\n".join(end_to_end_markdown(rows + skipped))
    assert "End to end per image" in text and "fullsize.jpg" in text and "not timed" in text
