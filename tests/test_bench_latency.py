"""Latency statistics and the timing loop (iterations vs duration, warm-up, device-event blocks)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from dsedge.bench.latency import device_blocks, host_timings, measure_latency, summarize
from dsedge.engines.base import Runner, RunnerInfo
from dsedge.errors import DsedgeError, EngineError


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


def test_fixed_iterations_and_warmup() -> None:
    r = SleepRunner()
    times, warm_s = host_timings(r, BATCH, warmup=3, iters=5)
    assert len(times) == 5 and r.calls == 8
    assert r.syncs >= 5  # every timed iteration waits for the device
    assert (times >= 2.0).all() and warm_s >= 0.006


def test_duration_runs_until_the_budget_with_a_minimum() -> None:
    r = SleepRunner(0.01)
    t0 = time.perf_counter()
    times, _ = host_timings(r, BATCH, warmup=0, duration=0.1, min_iters=3)
    assert time.perf_counter() - t0 >= 0.1
    assert 3 <= len(times) <= 12
    slow = SleepRunner(0.05)
    times, _ = host_timings(slow, BATCH, warmup=0, duration=0.01, min_iters=3)
    assert len(times) == 3  # the minimum wins over a tiny budget


def test_bad_settings() -> None:
    r = SleepRunner()
    with pytest.raises(DsedgeError, match="iters"):
        host_timings(r, BATCH, iters=0)
    with pytest.raises(DsedgeError, match="duration"):
        host_timings(r, BATCH, duration=-1)
    with pytest.raises(DsedgeError, match="warmup"):
        host_timings(r, BATCH, warmup=-1, iters=1)


def test_measure_latency_cpu_has_host_block_only() -> None:
    out = measure_latency(SleepRunner(), BATCH, warmup=1, iters=4)
    assert set(out) == {"host", "warmup_s"}
    h = out["host"]
    assert h["iters"] == 4 and h["batch_size"] == 4
    assert h["p50_ms"] <= h["p90_ms"] <= h["p99_ms"]


class FakeCudaRunner(SleepRunner):
    """A runner that claims a CUDA device and times itself; refuses CUDA graphs."""

    device = SimpleNamespace(type="cuda")

    def device_timings(self, batch, iters, *, warmup=3, include_copies=True, cuda_graph=False):  # noqa: ANN001, ANN201
        if cuda_graph:
            raise EngineError("no graphs here")
        return np.full(iters, 1.0 if include_copies else 0.5)


def test_device_blocks_with_and_without_copies() -> None:
    blocks = device_blocks(FakeCudaRunner(), BATCH, iters=6, warmup=1)
    assert blocks["device"]["mean_ms"] == 1.0 and blocks["device"]["iters"] == 6
    assert blocks["device_compute"]["mean_ms"] == 0.5
    assert "device_compute_graph" not in blocks and "no graphs here" in blocks["notes"][0]
    out = measure_latency(FakeCudaRunner(), BATCH, iters=2)
    assert out["device"]["iters"] == 10  # at least 10 device-timed iterations


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
