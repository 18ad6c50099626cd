"""Latency measurement of one runner on one batch: warm-up, then per-iteration timings -> statistics.

Every backend is timed the same way from the host (`perf_counter` around
`infer()` + `synchronize()`), so the numbers compare what a caller of the
runner waits for, copies included. A fixed `iters` gives reproducible counts;
`duration` runs until the time budget is spent (at least `min_iters`), which
keeps slow rows (eager PyTorch at batch 32 on a small CPU) from dominating the
bench. Runners that can time themselves on the GPU (`device_timings`, e.g.
`TorchRunner` on CUDA) add device-event blocks: with and without host<->device
copies, and with a CUDA graph where the backend allows one (compare trtexec's
`--noDataTransfers` / `--useCudaGraph`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dsedge.engines.base import Runner
from dsedge.errors import DsedgeError


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-iteration latencies of one batch size (milliseconds per batch)."""

    batch_size: int
    iters: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    throughput: float  # images per second at the mean latency

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(times_ms: np.ndarray | list[float], batch_size: int) -> LatencyStats:
    """Statistics of per-iteration latencies; percentiles interpolate linearly (monotone in q)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings to summarise")
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    mean = float(t.mean())
    return LatencyStats(
        batch_size=int(batch_size),
        iters=int(t.size),
        mean_ms=mean,
        std_ms=float(t.std()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        min_ms=float(t.min()),
        max_ms=float(t.max()),
        throughput=float(batch_size * 1000.0 / mean) if mean > 0 else float("inf"),
    )


def host_timings(
    runner: Runner,
    batch: np.ndarray,
    *,
    warmup: int = 1,
    iters: int | None = None,
    duration: float | None = None,
    min_iters: int = 3,
    max_iters: int = 100_000,
) -> tuple[np.ndarray, float]:
    """(per-iteration ms, warm-up seconds). Exactly `iters` runs, or runs until `duration` s elapsed.

    The warm-up (first calls: torch.compile compiles, OpenVINO/TensorRT allocate) is
    timed separately and returned, so the report can show compile cost apart from latency.
    """
    if iters is not None and iters < 1:
        raise DsedgeError(f"--iters must be >= 1, got {iters}")
    if duration is not None and duration <= 0:
        raise DsedgeError(f"--duration must be > 0 seconds, got {duration}")
    if warmup < 0:
        raise DsedgeError(f"--warmup must be >= 0, got {warmup}")
    t0 = time.perf_counter()
    for _ in range(warmup):
        runner.infer(batch)
    runner.synchronize()
    warm_s = time.perf_counter() - t0
    times: list[float] = []
    budget_end = time.perf_counter() + (duration if duration is not None else 0.0)
    while True:
        start = time.perf_counter()
        runner.infer(batch)
        runner.synchronize()
        end = time.perf_counter()
        times.append((end - start) * 1000.0)
        n = len(times)
        if iters is not None:
            if n >= iters:
                break
        elif (end >= budget_end and n >= min_iters) or n >= max_iters:
            break
    return np.asarray(times), warm_s


def device_blocks(runner: Runner, batch: np.ndarray, iters: int, warmup: int) -> dict[str, Any]:
    """Device-event latency blocks for runners that offer `device_timings` on a GPU, else {}.

    Keys: "device" (events around copies + compute), "device_compute" (resident
    input, no copies), "device_compute_graph" (CUDA-graph replay, where allowed).
    TensorRT runners (`run_resident`) get "device_compute" timed from the host.
    A block the runner refuses is left out and its reason recorded under "notes".
    """
    n = int(batch.shape[0])
    resident = getattr(runner, "run_resident", None)
    if resident is not None:  # TensorRT: engine on resident device buffers, timed from the host
        try:
            runner.infer(batch)  # puts this batch into the device buffers
            for _ in range(warmup):
                resident(n)
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                resident(n)
                times.append((time.perf_counter() - t0) * 1000.0)
            return {"device_compute": summarize(times, n).to_dict(),
                    "notes": ["device_compute: host-timed engine runs without host<->device copies"]}
        except DsedgeError as e:
            return {"notes": [f"device_compute: {e.message}"]}
    timer = getattr(runner, "device_timings", None)
    device = getattr(runner, "device", None)
    if timer is None or getattr(device, "type", None) != "cuda":
        return {}
    blocks: dict[str, Any] = {}
    notes: list[str] = []
    variants = (
        ("device", {"include_copies": True}),
        ("device_compute", {"include_copies": False}),
        ("device_compute_graph", {"include_copies": False, "cuda_graph": True}),
    )
    for key, kw in variants:
        try:
            blocks[key] = summarize(timer(batch, iters, warmup=warmup, **kw), n).to_dict()
        except DsedgeError as e:
            notes.append(f"{key}: {e.message}")
    if notes:
        blocks["notes"] = notes
    return blocks


def measure_latency(
    runner: Runner,
    batch: np.ndarray,
    *,
    warmup: int = 1,
    iters: int | None = None,
    duration: float | None = 2.0,
    min_iters: int = 3,
    device_events: bool = True,
) -> dict[str, Any]:
    """Latency of `runner` on `batch`: {"host": stats, "warmup_s": s, [device blocks]}.

    `iters` wins over `duration`; with neither, `duration` defaults to 2 s.
    """
    if iters is None and duration is None:
        duration = 2.0
    times, warm_s = host_timings(
        runner, batch, warmup=warmup, iters=iters, duration=duration, min_iters=min_iters
    )
    out: dict[str, Any] = {"host": summarize(times, int(batch.shape[0])).to_dict(), "warmup_s": warm_s}
    if device_events:
        out.update(device_blocks(runner, batch, max(len(times), 10), max(warmup, 3)))
    return out
