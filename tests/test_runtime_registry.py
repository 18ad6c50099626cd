"""The runtime chooses its engine through the engine registry (issue 24 item 2): a backend registered in
one line is usable by `dsedge predict`, `dsedge bench` and `dsedge doctor`; `auto` is an ordered preference
over the registry's runtime backends; every runner gives every output through `infer_all`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lesion_images import save_lesions
from tiny_bundle import make_tiny_bundle
from typer.testing import CliRunner

from dsedge.bundle import load_bundle
from dsedge.engines import registry
from dsedge.engines.base import Runner, RunnerInfo
from dsedge.errors import DsedgeError
from dsedge.runtime.backends import all_outputs, backend_choices, select_runner


class DummyRunner(Runner):
    """Says MEL for every image, so its answers are told apart from the tiny bundle's ONNX model."""

    def __init__(self, bundle: Any, precision: str, **options: Any) -> None:
        self.precision, self.options = precision, options

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("dummy", self.precision, "cpu", "0")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.tile(np.array([[4.0, 0.0, 0.0]], np.float32), (len(batch), 1))


@pytest.fixture
def dummy() -> Iterator[registry.Backend]:
    spec = registry.register(registry.Backend("dummy", ("fp32",), "onnx", DummyRunner, runtime=True))  # the one line
    yield spec
    registry.unregister("dummy")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "bundle")


def test_dummy_backend_through_predict_bench_and_doctor(dummy: registry.Backend, bundle: Path,
                                                        tmp_path: Path) -> None:
    from dsedge.bench.rounds import RoundPlan
    from dsedge.bench.run import run_bench
    from dsedge.cli import app
    from dsedge.doctor import doctor

    images = save_lesions(tmp_path / "img", [(640, 480), (600, 600)])
    out = CliRunner().invoke(app, ["predict", str(bundle), *map(str, images), "--backend", "dummy", "--json"])
    assert out.exit_code == 0, out.output
    results, _ = json.JSONDecoder().raw_decode(out.output[out.output.index("["):])  # a summary line follows
    assert [r["top_class"] for r in results] == ["MEL", "MEL"]  # the dummy's answer, not the ONNX model's
    assert "dummy" in backend_choices()

    res = run_bench(bundle, backends="onnxruntime,dummy", precisions="fp32", batch_sizes=(1,),
                    reference="onnxruntime fp32", plan=RoundPlan(rounds=3, min_rounds=3, iters=2),
                    guard_seconds=0.05, out=tmp_path / "bench", progress=False)
    (row,) = [r for r in res["rows"] if r["backend"] == "dummy"]
    assert row["status"] == "ok" and row["deployable"] is True

    assert "dummy" in doctor()["backends"]
    shown = CliRunner().invoke(app, ["doctor"])
    assert shown.exit_code == 0 and "dummy" in shown.output


def test_before_registration_predict_refuses_the_name(bundle: Path) -> None:
    with pytest.raises(DsedgeError, match="unknown backend 'dummy'"):
        select_runner(load_bundle(bundle), "dummy", None)


def test_auto_is_an_ordered_preference_over_runtime_backends(bundle: Path) -> None:
    b = load_bundle(bundle)
    assert [s.name for s in registry.auto_order()] == ["tensorrt", "onnxruntime"]
    runner, reason = select_runner(b, "auto", None)  # no engine in the bundle: ONNX Runtime, and why
    assert runner.info.backend == "onnxruntime" and "no TensorRT engine" in reason
    registry.register(registry.Backend("dummy", ("fp32",), "onnx", DummyRunner, runtime=True, auto_rank=0))
    try:
        runner, reason = select_runner(b, "auto", None)
        assert runner.info.backend == "dummy" and reason is None
        assert "dummy" not in [s.name for s in registry.auto_order("int8")]  # it does not run int8
    finally:
        registry.unregister("dummy")


def test_a_non_runtime_backend_is_not_a_predict_choice(bundle: Path) -> None:
    assert "torch" in registry.names() and "torch" not in backend_choices()
    with pytest.raises(DsedgeError, match="unknown backend 'torch'"):
        select_runner(load_bundle(bundle), "torch", None)


def test_predict_help_lists_the_registry_runtime_backends() -> None:
    from dsedge.cli import app

    out = CliRunner().invoke(app, ["predict", "--help"], env={"COLUMNS": "300"})
    names = [b.name for b in registry.runtime_backends()]
    assert out.exit_code == 0 and " | ".join(["auto", *names]) in " ".join(out.output.split())


def test_infer_all_gives_every_output_without_probing_runner_internals(bundle: Path) -> None:
    """`all_outputs` asks the runner (`infer_all`); a runner with only `infer` gives its logits."""
    runner, _ = select_runner(load_bundle(bundle), "onnxruntime", "fp32")
    x = np.zeros((2, 3, 32, 32), np.float32)
    assert set(runner.infer_all(x)) == {"logits"}
    outs = all_outputs(DummyRunner(None, "fp32"), x, "logits")
    assert outs["logits"].shape == (2, 3)
