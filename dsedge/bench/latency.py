"""Latency statistics of one row, and the GPU device-event blocks of runners that can time themselves.

Host timings come from the interleaved rounds (`dsedge.bench.rounds`): every
backend is timed the same way (`perf_counter` around `infer()` +
`synchronize()`), so the numbers compare what a caller waits for, copies
included. The spread (IQR / p50 and the coefficient of variation) travels with
every row: a p50 without its spread cannot be told apart from noise. Runners
with the `DeviceTimed` ability (TorchRunner on CUDA) add device-event blocks,
with and without host<->device copies and with a CUDA graph where allowed;
`ResidentInputs` runners (TensorRT) add compute without copies (compare
trtexec's `--noDataTransfers` / `--useCudaGraph`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dsedge.engines.base import DeviceTimed, ResidentInputs, Runner
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
    throughput: float  # images per second at the p50 latency
    iqr_ms: float = 0.0  # p75 - p25
    cv: float = 0.0  # std / mean

    @property
    def spread(self) -> float:
        """IQR / p50: the robust relative spread used by the stability guard."""
        return self.iqr_ms / self.p50_ms if self.p50_ms > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spread": self.spread}


def summarize(times_ms: np.ndarray | list[float], batch_size: int) -> LatencyStats:
    """Statistics of per-iteration latencies; percentiles interpolate linearly (monotone in q)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings to summarise")
    p25, p50, p75, p90, p99 = np.percentile(t, [25, 50, 75, 90, 99])
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
        throughput=float(batch_size * 1000.0 / p50) if p50 > 0 else float("inf"),
        iqr_ms=float(p75 - p25),
        cv=float(t.std() / mean) if mean > 0 else 0.0,
    )


def device_blocks(runner: Runner, batch: np.ndarray, iters: int, warmup: int) -> dict[str, Any]:
    """Device-event latency blocks for runners that offer `device_timings` on a GPU, else {}.

    Keys: "device" (events around copies + compute), "device_compute" (resident
    input, no copies), "device_compute_graph" (CUDA-graph replay, where allowed).
    TensorRT runners (`run_resident`) get "device_compute" timed from the host.
    A block the runner refuses is left out and its reason recorded under "notes".
    """
    n = int(batch.shape[0])
    if isinstance(runner, ResidentInputs):  # TensorRT: engine on resident device buffers, timed from the host
        try:
            runner.infer(batch)  # puts this batch into the device buffers
            for _ in range(warmup):
                runner.run_resident(n)
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                runner.run_resident(n)
                times.append((time.perf_counter() - t0) * 1000.0)
            return {"device_compute": summarize(times, n).to_dict(),
                    "notes": ["device_compute: host-timed engine runs without host<->device copies"]}
        except DsedgeError as e:
            return {"notes": [f"device_compute: {e.message}"]}
    if not isinstance(runner, DeviceTimed) or not runner.has_device_timer:
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
            blocks[key] = summarize(runner.device_timings(batch, iters, warmup=warmup, **kw), n).to_dict()
        except DsedgeError as e:
            notes.append(f"{key}: {e.message}")
    if notes:
        blocks["notes"] = notes
    return blocks
