"""benchmarks/gpu_check.py: the GPU-machine plan, its report, and an end-to-end dry run on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check
_spec.loader.exec_module(gpu_check)


def _by_name(steps: list) -> dict:
    return {s.name: s for s in steps}


def test_gpu_plan_covers_training_bench_rows_and_tensorrt(tmp_path: Path) -> None:
    s = gpu_check.Settings()
    steps = _by_name(gpu_check.plan(tmp_path, s, tensorrt=True))
    assert list(steps) == ["doctor", "train", "export", "build", "bench"]
    train = " ".join(steps["train"].argv)
    assert "train_throughput.py --device cuda --image-size 224 --batch-size 32" in train
    bench = steps["bench"].argv
    assert bench[bench.index("--device") + 1] == "cuda"
    assert bench[bench.index("--backends") + 1] == "torch,torch-compile,tensorrt"
    assert bench[bench.index("--batch-sizes") + 1] == "1,8,32"
    assert steps["build"].skip_reason is None and "--precision" in steps["build"].argv
    assert sum(s.budgets.values()) <= 600 and gpu_check.BUDGET_S < 8 * 60
    without = _by_name(gpu_check.plan(tmp_path, s, tensorrt=False))
    assert without["build"].skip_reason == "tensorrt does not import here"
    assert without["bench"].argv[without["bench"].argv.index("--backends") + 1] == "torch,torch-compile"


def test_report_reads_train_and_bench_results(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "train.json").write_text(json.dumps({"variants": [
        {"name": "eager", "median": 100.0, "warmup_s": 3.0}, {"name": "default", "median": 150.0, "warmup_s": 40.0}]}))
    (tmp_path / "bench" / "bench.json").write_text(json.dumps({"rows": [
        {"backend": "torch", "precision": "fp16", "batch_size": 8, "status": "ok", "speedup": 1.0,
         "latency": {"host": {"p50_ms": 2.5}, "device_compute_graph": {"p50_ms": 1.25}, "warmup_s": 1.0},
         "stability": {"unstable": False}}]}))
    train = gpu_check._train_rows(tmp_path / "train.json")
    assert train[1] == {"variant": "default", "img_s": 150.0, "warmup_s": 40.0, "vs_eager": 1.5}
    bench = gpu_check._bench_rows(tmp_path / "bench" / "bench.json")
    assert bench[0]["p50_ms"] == 2.5 and bench[0]["other_p50_ms"] == {"device_compute_graph": 1.25}
    md = gpu_check.markdown({"dry_run": False, "settings": {"device": "cuda"}, "created": "now", "host": "h",
                             "elapsed_s": 1, "budget_s": 470, "steps": [{"name": "train", "status": "ok"}],
                             "train": train, "bench": bench})
    assert "| default | 150.0 | 40.0 | 1.5x |" in md
    assert "| torch | fp16 | 8 | ok | 2.500 | device_compute_graph 1.250 | 1.00x |" in md


def test_a_step_over_its_time_is_recorded_not_fatal(tmp_path: Path) -> None:
    slow = gpu_check.Step("sleepy", [sys.executable, "-c", "import time; print('started'); time.sleep(30)"], 1.5)
    r = gpu_check.run_step(slow, deadline=float("inf"), log_dir=tmp_path)
    assert r["status"] == "timeout" and r["returncode"] is None
    late = gpu_check.run_step(slow, deadline=0.0, log_dir=tmp_path)
    assert late["status"] == "skipped" and "out of time" in late["reason"]


@pytest.mark.slow
def test_dry_run_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gc"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out),
                           "--budget-s", "900"], capture_output=True, text=True, timeout=1200, cwd=ROOT)
    report = json.loads((out / "gpu_check.json").read_text())
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert proc.returncode == 0, (status, proc.stdout[-2000:], [s.get("tail") for s in report["steps"]])
    assert status["doctor"] == status["train"] == status["export"] == status["bench"] == "ok"
    assert status["build"] == ("ok" if report["tensorrt"] else "skipped")
    assert [r["variant"] for r in report["train"]][0] == "eager" and len(report["train"]) >= 3
    rows = {(r["backend"], r["batch"]) for r in report["bench"]}
    assert {("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)} <= rows
    md = (out / "gpu_check.md").read_text()
    assert "# GPU check (dry run, CPU)" in md and "## Train step throughput" in md and "## Inference latency" in md
