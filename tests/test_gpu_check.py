"""benchmarks/gpu_check.py: the GPU-machine plan, its report, and an end-to-end dry run on the CPU."""

from __future__ import annotations

import importlib.metadata
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
    # torch.compile rows at every batch size: --quick-compile kept only batch 1
    assert "--compile-all" in bench and "--quick-compile" not in bench
    without = _by_name(gpu_check.plan(tmp_path, s, tensorrt=False))
    assert without["build"].skip_reason == "tensorrt does not import here"
    assert without["bench"].argv[without["bench"].argv.index("--backends") + 1] == "torch,torch-compile"


@pytest.mark.parametrize("dry_run", [False, True])
def test_build_profile_is_valid_for_both_settings(tmp_path: Path, dry_run: bool) -> None:
    """Issue 25 item 10: the dry run asked for --opt-batch 8 --max-batch 2, hidden because build was skipped."""
    s = gpu_check.Settings.dry_run() if dry_run else gpu_check.Settings()
    build = _by_name(gpu_check.plan(tmp_path, s, tensorrt=True))["build"].argv
    lo, opt, hi = (int(build[build.index(flag) + 1]) for flag in ("--min-batch", "--opt-batch", "--max-batch"))
    assert 1 <= lo <= opt <= hi == max(int(b) for b in s.batch_sizes.split(","))
    assert (lo, opt, hi) == ((1, 2, 2) if dry_run else (1, 8, 32))
    with pytest.raises(ValueError, match="invalid engine profile"):
        gpu_check.plan(tmp_path, gpu_check.Settings(batch_sizes="0"), tensorrt=False)


def test_results_are_written_after_every_step_and_survive_a_step_over_its_time(monkeypatch, tmp_path: Path) -> None:
    """Issue 25 item 10: a step that hits its cap (or a killed check) must not lose the earlier steps' numbers."""
    out = tmp_path / "gc"
    partial = {"variants": [{"name": "eager", "median": 10.0, "warmup_s": 1.0, "rates": [10.0]},
                            {"name": "default", "median": None, "warmup_s": 30.0, "rates": []}]}
    write_train = f"import json, pathlib; pathlib.Path({str(out / 'train.json')!r}).write_text({json.dumps(partial)!r})"
    # the second step sees the report as it stands while it runs, then overruns its limit
    peek = (f"import shutil, time; shutil.copy({str(out / 'gpu_check.json')!r}, {str(tmp_path / 'seen.json')!r}); "
            "time.sleep(30)")
    steps = [gpu_check.Step("train", [sys.executable, "-c", write_train], 20),
             gpu_check.Step("bench", [sys.executable, "-c", peek], 3)]
    monkeypatch.setattr(gpu_check, "plan", lambda *a, **k: steps)
    assert gpu_check.main(["--out", str(out), "--budget-s", "60"]) == 1  # the timeout is a failed step
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert [st["status"] for st in seen["steps"]] == ["ok"]  # written before the next step started
    assert seen["train"][0] == {"variant": "eager", "img_s": 10.0, "warmup_s": 1.0, "vs_eager": 1.0}
    final = json.loads((out / "gpu_check.json").read_text())
    assert [st["status"] for st in final["steps"]] == ["ok", "timeout"]
    assert final["train"][1] == {"variant": "default", "img_s": None, "warmup_s": 30.0, "vs_eager": None}
    assert "| default | - | 30.0 | - |" in (out / "gpu_check.md").read_text()
    assert not list(out.glob(".*.tmp"))


def test_train_throughput_writes_its_json_after_every_round(monkeypatch, tmp_path: Path) -> None:
    """A train step cut off by its cap used to lose every number: the JSON was written only at the end."""
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    tt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tt)
    calls = {"n": 0}

    def cheap_variant(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        def step() -> None:
            calls["n"] += 1
            if name.startswith("default") and calls["n"] > 12:  # the third variant stalls in round 2
                raise TimeoutError("step cap")

        return {"name": name, "step": step, "amp": "off", "channels_last": False, "compile": "off"}

    monkeypatch.setattr(tt, "make_variant", cheap_variant)
    out = tmp_path / "train.json"
    argv = ["--device", "cpu", "--steps", "2", "--rounds", "3", "--warmup", "1", "--json", str(out)]
    with pytest.raises(TimeoutError):
        tt.main(argv)
    data = json.loads(out.read_text())
    assert data["complete"] is False and [len(v["rates"]) for v in data["variants"]] == [2, 2, 1]
    rows = gpu_check._train_rows(out)
    assert [r["variant"] for r in rows][:2] == ["eager", "eager+amp+cl"] and rows[0]["img_s"] is not None
    calls["n"] = -10**6  # now it finishes: the final file says complete
    tt.main(argv)
    assert json.loads(out.read_text())["complete"] is True


def test_keep_torch_constraints_pin_the_installed_stack(tmp_path: Path) -> None:
    """Issue 25 item 10: `pip install -e '.[train]'` upgraded a preinstalled torch and pulled CUDA 13 wheels."""
    installed = {"torch": "2.9.0+cu128", "torchvision": "0.24.0+cu128", "triton": "3.5.0",
                 "nvidia-cublas-cu12": "12.8.4.1", "numpy": "2.3.4", "onnx": "1.19.0"}
    assert gpu_check.keep_constraints(installed) == [
        "nvidia-cublas-cu12==12.8.4.1", "torch==2.9.0+cu128", "torchvision==0.24.0+cu128", "triton==3.5.0"]
    target = tmp_path / "keep.txt"
    assert gpu_check.main(["--constraints", str(target)]) == 0
    lines = target.read_text().splitlines()
    assert f"torch=={importlib.metadata.version('torch')}" in lines  # this venv's own torch, as installed
    doc = (ROOT / "docs" / "TENSORRT.md").read_text()
    command = next(line for line in doc.splitlines() if "gpu_check.py --constraints" in line)
    assert "--system-site-packages" in command and "-c keep-torch.txt" in command
    assert command.index("--constraints") < command.index("pip install") < command.index("--out")


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
