"""Interleaved measurement: every row a few iterations per round, rounds in shuffled order.

Timing rows one after another lets load that comes and goes land on some rows
and not on others, and the speed-up then measures the machine, not the
backend. In rounds, the reference and every row see the same conditions within
seconds of each other, so the speed-up is computed per round (reference median
/ row median of that round) and summarised as a median with an interval.
Warm-up (torch.compile's compilation, OpenVINO's first inference) happens
before the rounds and is reported apart; each cell's iterations per round are
chosen from its warm-up time so a round gives every cell about the same
wall-clock share (`round_ms`) — 1 ms rows get many iterations, 1 s rows one.

Each cell, in each round, starts after an idle pause (`gap_ms`): the rows run
different runtimes in one process on few cores, and the thread pool of the row
that just ran (libgomp spins ~300,000 pauses by default, TBB workers spin too)
keeps a core busy for a while after its last call. Cells of short calls (two or
more iterations per round) then make `settle` untimed calls: on a 2-vCPU VM the
first OpenVINO INT8 call after another row ran took 1.2-1.9x its median
(cold caches, sleeping workers), ONNX Runtime's about 1.1x. Python's garbage collector is off while a round runs (a collection inside
a timed call lands on whichever row happened to allocate).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dsedge.bench.stability import MachineGuard
from dsedge.engines.base import Runner
from dsedge.errors import DsedgeError


@dataclass
class Cell:
    """One timed row: a runner at one batch size, its iterations per round and what it measured."""

    key: tuple[str, str, int]  # backend, precision, batch size
    runner: Runner
    batch: np.ndarray
    iters: int = 1
    warmup_s: float = 0.0  # the first call(s): compilation, allocation
    times_ms: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)

    def time_once(self) -> float:
        start = time.perf_counter()
        self.runner.infer(self.batch)
        self.runner.synchronize()
        return (time.perf_counter() - start) * 1000.0


@dataclass(frozen=True)
class RoundPlan:
    """How long to measure: `rounds` rounds, stopping early at `time_cap_s` but never before `min_rounds`."""

    rounds: int = 30
    min_rounds: int = 5
    time_cap_s: float = 200.0
    round_ms: float = 100.0  # target wall-clock per cell per round
    iters: int | None = None  # fixed iterations per cell per round (overrides round_ms)
    max_iters: int = 50
    warmup: int = 1
    seed: int = 0
    gap_ms: float = 20.0  # idle pause before each cell: the previous row's thread pools stop spinning
    settle: int = 1  # untimed calls at the start of each multi-iteration cell in each round

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.min_rounds < 1:
            raise DsedgeError(f"--rounds and --min-rounds must be >= 1, got {self.rounds}, {self.min_rounds}")
        if self.min_rounds > self.rounds:
            raise DsedgeError(f"--min-rounds ({self.min_rounds}) is above --rounds ({self.rounds})")
        if self.time_cap_s <= 0:
            raise DsedgeError(f"--time-cap must be > 0 seconds, got {self.time_cap_s}")
        if self.round_ms <= 0:
            raise DsedgeError(f"--round-ms must be > 0, got {self.round_ms}")
        if self.iters is not None and self.iters < 1:
            raise DsedgeError(f"--iters must be >= 1, got {self.iters}")
        if self.warmup < 0:
            raise DsedgeError(f"--warmup must be >= 0, got {self.warmup}")
        if self.gap_ms < 0 or self.settle < 0:
            raise DsedgeError(f"--gap-ms and --settle must be >= 0, got {self.gap_ms}, {self.settle}")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def warm_up(cell: Cell, plan: RoundPlan) -> None:
    """Run the warm-up calls (at least one: it also estimates the cell's time) and size its rounds."""
    start = time.perf_counter()
    for _ in range(max(1, plan.warmup)):
        cell.time_once()
    cell.warmup_s = time.perf_counter() - start
    if plan.iters is not None:
        cell.iters = plan.iters
        return
    estimate = cell.time_once()  # after the warm-up: the first calls may have compiled or allocated
    cell.iters = int(np.clip(round(plan.round_ms / max(estimate, 1e-3)), 1, plan.max_iters))


def _time_cell(cell: Cell, plan: RoundPlan) -> None:
    """One cell's turn in a round: idle gap, untimed settle calls (short calls only), its timed iterations."""
    if plan.gap_ms > 0:
        time.sleep(plan.gap_ms / 1000.0)
    for _ in range(plan.settle if cell.iters > 1 else 0):
        cell.runner.infer(cell.batch)
        cell.runner.synchronize()
    times = [cell.time_once() for _ in range(cell.iters)]
    cell.times_ms.extend(times)
    cell.round_medians.append(float(np.median(times)))


def run_rounds(
    cells: list[Cell],
    plan: RoundPlan,
    guard: MachineGuard | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Time every cell in `plan.rounds` shuffled rounds; returns {"rounds", "seconds", "stopped_by"}.

    `on_round(done, planned)` is called after each round (the progress bar). The garbage
    collector is off during a round (it runs between rounds) and restored afterwards.
    """
    rng = np.random.default_rng(plan.seed)
    start = time.perf_counter()
    done, stopped_by = 0, "rounds"
    gc_was_on = gc.isenabled()
    try:
        for _ in range(plan.rounds):
            if done >= plan.min_rounds and time.perf_counter() - start >= plan.time_cap_s:
                stopped_by = "time cap"
                break
            gc.collect()
            gc.disable()
            if guard is not None:
                guard.round_start()
            for i in rng.permutation(len(cells)):
                _time_cell(cells[i], plan)
            if guard is not None:
                guard.round_end()
            if gc_was_on:
                gc.enable()
            done += 1
            if on_round is not None:
                on_round(done, plan.rounds)
    finally:
        if gc_was_on:
            gc.enable()
    return {"rounds": done, "seconds": round(time.perf_counter() - start, 2), "stopped_by": stopped_by}
