"""Interleaved rounds: every cell in every round, shuffled order per round, warm-up sizing, minimum rounds and time cap."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from dsedge.bench.rounds import Cell, RoundPlan, run_rounds, warm_up
from dsedge.bench.stability import MachineGuard
from dsedge.engines.base import Runner, RunnerInfo
from dsedge.errors import DsedgeError

BATCH = np.zeros((1, 3, 4, 4), np.float32)


class LogRunner(Runner):
    """Appends its name to a shared log on every call; optionally sleeps."""

    def __init__(self, name: str, log: list[str], seconds: float = 0.0) -> None:
        self.name, self.log, self.seconds = name, log, seconds

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo(self.name, "fp32", "cpu", "0")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.log.append(self.name)
        if self.seconds:
            time.sleep(self.seconds)
        return np.zeros((len(batch), 3), np.float32)


def _cells(log: list[str], names: str = "abcd", seconds: float = 0.0) -> list[Cell]:
    return [Cell((n, "fp32", 1), LogRunner(n, log, seconds), BATCH, iters=2) for n in names]


def test_every_cell_runs_in_every_round_in_shuffled_order() -> None:
    log: list[str] = []
    cells = _cells(log)
    guard = MachineGuard()
    info = run_rounds(cells, RoundPlan(rounds=6, min_rounds=6, iters=2, gap_ms=0, settle=0), guard)
    assert info == {"rounds": 6, "seconds": info["seconds"], "stopped_by": "rounds"}
    assert all(len(c.times_ms) == 12 and len(c.round_medians) == 6 for c in cells)
    rounds = [log[i:i + 8] for i in range(0, len(log), 8)]
    orders = []
    for calls in rounds:
        assert sorted(calls) == sorted("abcd" * 2)  # each cell twice per round ...
        order = calls[::2]
        assert calls[1::2] == order  # ... its iterations back to back
        orders.append("".join(order))
    assert len(set(orders)) > 1  # the order is shuffled from round to round
    assert len(guard.rounds) == 6  # the guard sampled the machine around every round


def test_warm_up_is_apart_and_sizes_the_iterations() -> None:
    log: list[str] = []
    cell = Cell(("a", "fp32", 1), LogRunner("a", log, 0.005), BATCH)
    warm_up(cell, RoundPlan(round_ms=50.0, warmup=2))
    assert cell.warmup_s >= 0.01 and cell.times_ms == []  # warm-up calls are not timings
    assert 4 <= cell.iters <= 10  # about 50 ms of a 5 ms call
    fixed = Cell(("a", "fp32", 1), LogRunner("a", log), BATCH)
    warm_up(fixed, RoundPlan(iters=3))
    assert fixed.iters == 3
    fast = Cell(("a", "fp32", 1), LogRunner("a", log), BATCH)
    warm_up(fast, RoundPlan(round_ms=1e6, max_iters=7))
    assert fast.iters == 7


def test_time_cap_stops_after_the_minimum_rounds() -> None:
    log: list[str] = []
    cells = _cells(log, "ab", seconds=0.01)
    info = run_rounds(cells, RoundPlan(rounds=50, min_rounds=2, time_cap_s=0.001, iters=1))
    assert info["rounds"] == 2 and info["stopped_by"] == "time cap"
    seen: list[tuple[int, int]] = []
    run_rounds(_cells(log, "ab"), RoundPlan(rounds=3, min_rounds=1, iters=1),
               on_round=lambda done, planned: seen.append((done, planned)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_plan_validation() -> None:
    with pytest.raises(DsedgeError, match="min-rounds"):
        RoundPlan(rounds=3, min_rounds=5)
    with pytest.raises(DsedgeError, match="time-cap"):
        RoundPlan(time_cap_s=0)
    with pytest.raises(DsedgeError, match="iters"):
        RoundPlan(iters=0)
    with pytest.raises(DsedgeError, match="round-ms"):
        RoundPlan(round_ms=0)
    with pytest.raises(DsedgeError, match="warmup"):
        RoundPlan(warmup=-1)
    with pytest.raises(DsedgeError, match="gap-ms"):
        RoundPlan(gap_ms=-1)
    with pytest.raises(DsedgeError, match="settle"):
        RoundPlan(settle=-1)
    assert RoundPlan().to_dict()["rounds"] == 30


class GcProbe(LogRunner):
    """Records, on every call, whether the garbage collector is on and when the call started."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__(name, log)
        self.gc_on: list[bool] = []
        self.starts: list[float] = []

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import gc

        self.gc_on.append(gc.isenabled())
        self.starts.append(time.perf_counter())
        return super().infer(batch)


def test_each_turn_has_an_idle_gap_and_untimed_settle_calls() -> None:
    log: list[str] = []
    probes = [GcProbe(n, log) for n in "ab"]
    cells = [Cell((p.name, "fp32", 1), p, BATCH, iters=2) for p in probes]
    run_rounds(cells, RoundPlan(rounds=3, min_rounds=3, iters=2, gap_ms=20.0, settle=2))
    for p, cell in zip(probes, cells, strict=True):
        assert len(p.starts) == 3 * (2 + 2)  # per round: 2 settle calls + 2 timed ones ...
        assert len(cell.times_ms) == 6 and len(cell.round_medians) == 3  # ... only the timed ones recorded
    # the calls in call order: a new turn (other cell) starts at least the gap after the previous call
    calls = sorted((t, p.name) for p in probes for t in p.starts)
    switches = [t1 - t0 for (t0, a), (t1, b) in itertools.pairwise(calls) if a != b]
    assert switches and min(switches) >= 0.019
    single = GcProbe("c", log)  # one long call per round: no settle call, its time is all measured
    run_rounds([Cell(("c", "fp32", 1), single, BATCH, iters=1)], RoundPlan(rounds=3, min_rounds=3, iters=1, settle=2))
    assert len(single.starts) == 3


def test_garbage_collector_is_off_in_rounds_and_restored() -> None:
    import gc

    log: list[str] = []
    probe = GcProbe("a", log)
    assert gc.isenabled()
    run_rounds([Cell(("a", "fp32", 1), probe, BATCH, iters=2)], RoundPlan(rounds=2, min_rounds=2, iters=2, gap_ms=0))
    assert probe.gc_on and not any(probe.gc_on)
    assert gc.isenabled()
    gc.disable()
    try:  # a caller that had it off keeps it off
        run_rounds([Cell(("a", "fp32", 1), probe, BATCH, iters=1)], RoundPlan(rounds=1, min_rounds=1, iters=1))
        assert not gc.isenabled()
    finally:
        gc.enable()
