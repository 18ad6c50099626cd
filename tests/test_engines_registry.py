"""Backend registry: built-in facts, uniform from_bundle, clear refusals, and a dummy backend added from
this one file showing up in bench rows, the bench's defaults and doctor."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle

from dsedge.engines import registry
from dsedge.engines.base import Runner, RunnerInfo
from dsedge.errors import DsedgeError, EngineError, MissingDependencyError


class DummyRunner(Runner):
    """A backend in a dozen lines: sleeps a little and returns zeros."""

    made: list[dict[str, Any]] = []

    def __init__(self, bundle: Any, precision: str, **options: Any) -> None:
        self.precision = precision
        DummyRunner.made.append({"precision": precision, **options})

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("dummy", self.precision, "cpu", "0")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(0.0005)
        return np.zeros((len(batch), 3), np.float32)


@pytest.fixture
def dummy() -> Iterator[registry.Backend]:
    DummyRunner.made.clear()
    spec = registry.register(registry.Backend(
        "dummy", ("fp32", "int8"), "onnx", DummyRunner, runtime=True, options={"knob": int},
        description="a test backend"))
    yield spec
    registry.unregister("dummy")


def test_builtin_backends_and_their_facts() -> None:
    assert registry.names()[:5] == ["torch", "torch-compile", "onnxruntime", "openvino", "tensorrt"]
    ov, torch_, trt = registry.get("openvino"), registry.get("torch"), registry.get("tensorrt")
    assert ov.precisions == ("fp32", "bf16", "int8") and ov.device == "cpu" and ov.runtime and ov.extra == "openvino"
    assert not torch_.runtime and torch_.artifact == "checkpoint"
    assert trt.device == "cuda" and trt.artifact == "tensorrt" and "int8" in trt.precisions
    assert registry.get("torch-compile").fixed == {"compile": True}
    with pytest.raises(DsedgeError, match="unknown backend: tflite"):
        registry.get("tflite")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Backend("torch", ("fp32",), "checkpoint", DummyRunner))
    with pytest.raises(ValueError, match="artifact"):
        registry.Backend("x", ("fp32",), "pickle", DummyRunner)


def test_from_bundle_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError, match="does not run fp16"):
        registry.get("openvino").from_bundle(None, "fp16")
    with pytest.raises(EngineError, match="runs on CPUs"):
        registry.get("openvino").from_bundle(None, "fp32", device="cuda:0")
    monkeypatch.setitem(sys.modules, "openvino", None)  # blocked: as if not installed
    with pytest.raises(MissingDependencyError) as err:
        registry.get("openvino").from_bundle(None, "fp32")
    assert "dsedge[openvino]" in (err.value.hint or "")
    ok, why = registry.get("openvino").availability()
    assert not ok and "dsedge[openvino]" in why


def test_options_are_filtered_to_what_the_backend_declares(dummy: registry.Backend) -> None:
    dummy.from_bundle("bundle", "int8", threads=2, device="cpu", interleaved=True, knob=3, checkpoint="x.pt",
                      static_shapes=False)
    assert DummyRunner.made == [{"precision": "int8", "threads": 2, "device": "cpu", "interleaved": True,
                                 "knob": 3}]


def test_dummy_backend_appears_in_bench_rows_and_doctor(dummy: registry.Backend, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dsedge.bench.rounds import RoundPlan
    from dsedge.bench.run import run_bench
    from dsedge.cli import app
    from dsedge.doctor import doctor

    bundle = make_tiny_bundle(tmp_path / "bundle")
    res = run_bench(bundle, backends=None, precisions="fp32", batch_sizes=(1,), reference="onnxruntime fp32",
                    plan=RoundPlan(rounds=3, min_rounds=3, iters=2), guard_seconds=0.05, out=tmp_path / "o",
                    options=["dummy.knob=7"], progress=False)
    (row,) = [r for r in res["rows"] if r["backend"] == "dummy"]
    assert row["status"] == "ok" and row["deployable"] is True and row["speedup"] > 0
    assert row["latency"]["host"]["iters"] == 6 and DummyRunner.made[0]["knob"] == 7
    assert "dummy" in res["settings"]["backends"]  # default backends = every registered one
    report = doctor()
    assert "dummy" in report["backends"]
    assert any(b["name"] == "dummy" and b["available"] for b in report["registry"])
    out = CliRunner().invoke(app, ["doctor"])
    assert out.exit_code == 0 and "dummy" in out.output


def test_registry_and_cpu_runners_import_without_torch() -> None:
    """The torch-free runtime imports the registry and the ONNX Runtime / OpenVINO runners."""
    code = ("import sys, json, dsedge.engines.registry as r, dsedge.engines.openvino_runner, "
            "dsedge.engines.ort_runner, dsedge.doctor; dsedge.doctor.registry_info(); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'openvino'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []  # neither torch nor openvino imported
