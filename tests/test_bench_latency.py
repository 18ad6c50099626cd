"""Latency statistics (percentiles, spread, CV) and the device-event blocks of runners with those abilities."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dsedge.bench.latency import device_blocks, summarize
from dsedge.engines.base import Runner, RunnerInfo
from dsedge.errors import EngineError


class SleepRunner(Runner):
    """Sleeps a given time per call and counts calls."""

    def __init__(self, seconds: float = 0.002) -> None:
        self.seconds = seconds
        self.calls = 0
        self.syncs = 0

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("fake", "fp32", "cpu", "0")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        time.sleep(self.seconds)
        return np.zeros((len(batch), 3), np.float32)

    def synchronize(self) -> None:
        self.syncs += 1


BATCH = np.zeros((4, 3, 8, 8), np.float32)


def test_summarize_known_values() -> None:
    s = summarize(list(range(1, 101)), batch_size=4)  # 1..100 ms
    assert s.iters == 100 and s.min_ms == 1 and s.max_ms == 100
    assert s.mean_ms == pytest.approx(50.5)
    assert s.p50_ms == pytest.approx(50.5) and s.p90_ms == pytest.approx(90.1) and s.p99_ms == pytest.approx(99.01)
    assert s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    assert s.throughput == pytest.approx(4 * 1000 / 50.5)
    with pytest.raises(ValueError):
        summarize([], 1)


def test_spread_and_cv() -> None:
    s = summarize([10.0, 10.0, 10.0, 10.0], 1)
    assert s.iqr_ms == 0.0 and s.cv == 0.0 and s.spread == 0.0
    s = summarize([8.0, 9.0, 10.0, 11.0, 12.0], 2)  # p25 9, p75 11
    assert s.iqr_ms == pytest.approx(2.0) and s.spread == pytest.approx(0.2)
    assert s.cv == pytest.approx(np.std([8, 9, 10, 11, 12]) / 10.0)
    assert s.throughput == pytest.approx(2 * 1000 / 10.0)  # images per second at the p50
    d = s.to_dict()
    assert d["spread"] == pytest.approx(0.2) and d["iqr_ms"] == pytest.approx(2.0)


def test_cpu_runner_has_no_device_blocks() -> None:
    assert device_blocks(SleepRunner(), BATCH, iters=3, warmup=1) == {}


class FakeCudaRunner(SleepRunner):
    """A runner with the `DeviceTimed` ability on a CUDA device; refuses CUDA graphs."""

    has_device_timer = True

    def device_timings(self, batch, iters, *, warmup=3, include_copies=True, cuda_graph=False):  # noqa: ANN001, ANN201
        if cuda_graph:
            raise EngineError("no graphs here")
        return np.full(iters, 1.0 if include_copies else 0.5)


def test_device_blocks_with_and_without_copies() -> None:
    blocks = device_blocks(FakeCudaRunner(), BATCH, iters=6, warmup=1)
    assert blocks["device"]["mean_ms"] == 1.0 and blocks["device"]["iters"] == 6
    assert blocks["device_compute"]["mean_ms"] == 0.5
    assert "device_compute_graph" not in blocks and "no graphs here" in blocks["notes"][0]
    off = FakeCudaRunner()
    off.has_device_timer = False  # the method exists, the device cannot time (a CPU-placed TorchRunner)
    assert device_blocks(off, BATCH, iters=6, warmup=1) == {}


class FakeTrtRunner(SleepRunner):
    """TensorRT-like: `run_resident(n)` runs without copies and checks the profile."""

    max_batch = 4

    def run_resident(self, n: int) -> None:
        if n > self.max_batch:
            raise EngineError("outside the profile")
        time.sleep(0.001)


def test_resident_runs_give_compute_only_block() -> None:
    blocks = device_blocks(FakeTrtRunner(), BATCH, iters=3, warmup=1)
    assert blocks["device_compute"]["iters"] == 3 and blocks["device_compute"]["min_ms"] >= 1.0
    big = np.zeros((8, 3, 8, 8), np.float32)
    assert "outside the profile" in device_blocks(FakeTrtRunner(), big, iters=3, warmup=1)["notes"][0]
