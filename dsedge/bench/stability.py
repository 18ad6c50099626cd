"""Can this timing be trusted? The busy-machine guard, per-row spread limits and bootstrap intervals.

A benchmark on a machine that other work shares does not fail, it lies: load
that comes and goes lands on some rows and not on others (a reference p50 of
232 ms next to a min of 31 ms made OpenVINO "53x PyTorch"). Interleaving the
rows (`dsedge.bench.rounds`) makes them share the conditions; this module says
when the conditions were too bad anyway, so the report marks rows *unstable*
and keeps them out of the headline instead of stating them as fact.

What is measured: from /proc/stat, the CPU time the whole machine spent busy
minus the CPU time of this process (`time.process_time`, all its threads) —
the CPU other processes took — and the time stolen by the hypervisor, both as
a share of all logical CPUs, before the run and in every round; the 1-minute
load average is recorded beside them (it lags and counts the bench itself, so
it is shown, not judged). Per row: IQR / p50 of its timings, and the relative
half-width of the bootstrap 95 % interval of its speed-up.

A virtual machine's host can be busy while the guest sees 0 % other CPU and
0 % steal: a vCPU that shares a physical core (SMT) or a power budget with
other tenants simply runs slower. On a 2-vCPU cloud VM a fixed, single-threaded
pure-Python loop varied by 30 % IQR/p50 (1-second medians 11.7-18.8 ms) with
nothing else running in the guest. So the guard also times such a fixed probe
(`host_probe`) around every round: its spread is the host's speed variation,
which no bench setting can remove, and above `GuardLimits.host_spread` the
machine counts as busy.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GuardLimits:
    """Thresholds above which a measurement is called unstable (all fractions)."""

    other_cpu: float = 0.15  # share of all CPUs used by other processes, before or during the rounds
    steal: float = 0.05  # share of CPU time stolen by the hypervisor
    spread: float = 0.15  # IQR / p50 of a row's timings
    ci: float = 0.10  # half-width of the speed-up's 95 % interval / its median
    host_spread: float = 0.10  # IQR / p50 of the fixed host-speed probe over the rounds

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU counters at one instant (seconds of CPU time)."""

    wall_s: float
    busy_s: float  # all CPUs: user + nice + system + irq + softirq
    steal_s: float
    own_s: float  # this process, all threads
    loadavg: float


def _allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None


def snapshot(proc_stat: str | Path = "/proc/stat", cpus: set[int] | None = None) -> CpuSnapshot | None:
    """Read the counters; None where /proc/stat does not exist (then the guard judges spread only).

    Only the CPUs this process may run on are summed (`cpus`, default: its affinity): in a
    container pinned to 2 of a host's 64 CPUs, work on the other 62 does not slow the bench.
    """
    try:
        lines = Path(proc_stat).read_text().splitlines()
    except OSError:
        return None
    cpus = _allowed_cpus() if cpus is None else cpus
    per_cpu = [ln.split() for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit()]
    if cpus is not None and per_cpu:
        rows = [f for f in per_cpu if int(f[0][3:]) in cpus]
    else:
        rows = [ln.split() for ln in lines[:1] if ln.startswith("cpu ")]
    if not rows or any(len(f) < 9 for f in rows):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (sum(int(f[i]) for f in rows) for i in range(1, 9))
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return CpuSnapshot(
        wall_s=time.perf_counter(),
        busy_s=(user + nice + system + irq + softirq) / tick,
        steal_s=steal / tick,
        own_s=time.process_time(),
        loadavg=os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    )


@dataclass(frozen=True)
class Load:
    """What the rest of the machine did between two snapshots, as shares of all logical CPUs."""

    other_cpu: float
    steal: float
    loadavg: float
    seconds: float


def load_between(a: CpuSnapshot, b: CpuSnapshot, cpus: int) -> Load:
    wall = max(b.wall_s - a.wall_s, 1e-9)
    other = max(0.0, (b.busy_s - a.busy_s) - (b.own_s - a.own_s))
    return Load(other_cpu=min(1.0, other / (wall * cpus)), steal=min(1.0, (b.steal_s - a.steal_s) / (wall * cpus)),
                loadavg=b.loadavg, seconds=wall)


def logical_cpus() -> int:
    """The CPUs this process may run on (its affinity), the bench's default thread count."""
    allowed = _allowed_cpus()
    return len(allowed) if allowed else (os.cpu_count() or 1)


PROBE_LOOPS = 20_000  # about 1-2 ms of pure-Python work on a current x86 core


def host_probe(loops: int = PROBE_LOOPS) -> float:
    """Milliseconds a fixed single-threaded, cache-resident loop takes: the host's current speed.

    It touches no memory beyond a few integers and starts no thread, so its time moves only
    with the CPU's speed: frequency, a shared physical core, the hypervisor's scheduling.
    """
    start = time.perf_counter()
    acc = 0
    for i in range(loops):
        acc += i * i
    return (time.perf_counter() - start) * 1000.0


def probe_spread(times_ms: list[float]) -> float | None:
    """IQR / p50 of the probe times; None with fewer than 4."""
    if len(times_ms) < 4:
        return None
    p25, p50, p75 = np.percentile(np.asarray(times_ms, dtype=np.float64), [25, 50, 75])
    return float((p75 - p25) / p50) if p50 > 0 else None


@dataclass
class MachineGuard:
    """Samples the machine before the run and around every round; `verdict()` says whether it was busy."""

    limits: GuardLimits = field(default_factory=GuardLimits)
    cpus: int = field(default_factory=logical_cpus)
    before: Load | None = None
    rounds: list[Load] = field(default_factory=list)
    probe_ms: list[float] = field(default_factory=list)  # the host-speed probe, before and after every round
    probes_per_sample: int = 3
    _mark: CpuSnapshot | None = None

    def _probe(self) -> None:
        self.probe_ms.append(min(host_probe() for _ in range(self.probes_per_sample)))

    def measure_before(self, seconds: float = 1.0) -> Load | None:
        """Sleep `seconds` and see what the others did meanwhile (the machine as the bench found it)."""
        a = snapshot()
        time.sleep(seconds)
        b = snapshot()
        self.before = load_between(a, b, self.cpus) if a and b else None
        return self.before

    def round_start(self) -> None:
        self._probe()
        self._mark = snapshot()

    def round_end(self) -> None:
        self._probe()
        end = snapshot()
        if self._mark is not None and end is not None:
            self.rounds.append(load_between(self._mark, end, self.cpus))
        self._mark = None

    def verdict(self) -> dict[str, Any]:
        """{"busy": bool, "reasons": [...], "before": {...}, "during": {...}, "limits": {...}}."""
        lim, reasons = self.limits, []
        during: dict[str, float] = {}
        if self.rounds:
            seconds = sum(r.seconds for r in self.rounds)
            # over all rounds together: a short round is below /proc/stat's 10 ms resolution, their sum is not
            during = {"other_cpu": sum(r.other_cpu * r.seconds for r in self.rounds) / max(seconds, 1e-9),
                      "other_cpu_max": max(r.other_cpu for r in self.rounds),
                      "steal": sum(r.steal * r.seconds for r in self.rounds) / max(seconds, 1e-9),
                      "loadavg_max": max(r.loadavg for r in self.rounds), "seconds": seconds}
            if during["other_cpu"] > lim.other_cpu:
                reasons.append(f"other processes used {100 * during['other_cpu']:.0f}% of the "
                               f"{self.cpus} CPUs during the timed rounds (limit {100 * lim.other_cpu:.0f}%)")
            if during["steal"] > lim.steal:
                reasons.append(f"the hypervisor stole {100 * during['steal']:.0f}% of CPU time during the rounds")
        host = probe_spread(self.probe_ms)
        if host is not None and host > lim.host_spread:
            reasons.append(f"the host's speed varied {100 * host:.0f}% (IQR/p50 of a fixed CPU-bound probe around "
                           f"the rounds; limit {100 * lim.host_spread:.0f}%): the VM's host is busy even when "
                           "this machine is idle and steal is 0%")
        if self.before is not None and self.before.other_cpu > lim.other_cpu:
            reasons.append(f"other processes used {100 * self.before.other_cpu:.0f}% of the {self.cpus} CPUs "
                           f"before the run (load average {self.before.loadavg:.2f})")
        return {"busy": bool(reasons), "reasons": reasons, "cpus": self.cpus, "limits": lim.to_dict(),
                "before": asdict(self.before) if self.before else None, "during": during,
                "rounds_sampled": len(self.rounds),
                "host_probe": {"spread": host, "p50_ms": float(np.median(self.probe_ms)) if self.probe_ms else None,
                               "min_ms": min(self.probe_ms, default=None), "max_ms": max(self.probe_ms, default=None),
                               "samples": len(self.probe_ms)}}


def bootstrap_median_ci(values: np.ndarray | list[float], confidence: float = 0.95, resamples: int = 2000,
                        seed: int = 0) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the median (scipy); None with fewer than 3 values."""
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=np.float64)
    if v.size < 3:
        return None
    if np.ptp(v) == 0:
        return float(v[0]), float(v[0])
    res = bootstrap((v,), np.median, confidence_level=confidence, n_resamples=resamples, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


#: IQR of a normal distribution in standard deviations (IQR/p50 of the probe -> relative SD).
IQR_PER_SD = 1.349
Z95 = 1.96


def between_run_sd(host_spread: float | None) -> float:
    """Relative SD a rerun adds to a speed-up: the host's speed variation this run measured with its probe.

    Reruns on an idle VM moved speed-ups ~20 % while each run's bootstrap interval
    was a few %: the rounds of one run share one host state, so their spread says
    nothing about the next run's. The fixed probe's IQR/p50 around the rounds is
    the host-speed variation measured in the same run; as a relative SD it is the
    run-level random effect added to the interval (issue 26).
    """
    return 0.0 if host_spread is None else float(host_spread) / IQR_PER_SD


def speedup_summary(ref_rounds: list[float], row_rounds: list[float], limits: GuardLimits,
                    host_spread: float | None = None) -> dict[str, Any]:
    """Per-round speed-ups (reference median / row median of the same round), their median and 95 % CI.

    `ci95` covers a rerun's median (`widen_for_reruns`): on the log scale each side of
    the within-run bootstrap interval is combined with Z95 x `between_run_sd(host_spread)`. `ci95_within`
    is the bootstrap interval alone; `wide` (an unstable row) is judged on it,
    since it measures this run's resolution, not the host's.
    """
    ratios = np.asarray(ref_rounds, dtype=np.float64) / np.asarray(row_rounds, dtype=np.float64)
    med = float(np.median(ratios))
    ci = bootstrap_median_ci(ratios)
    half = (ci[1] - ci[0]) / 2 / med if ci is not None and med > 0 else None
    return {"median": med, "ci95": widen_for_reruns(med, ci, host_spread), "ci95_within": list(ci) if ci else None,
            "between_run_sd": between_run_sd(host_spread), "ci_rel_halfwidth": half,
            "rounds": [float(r) for r in ratios], "wide": half is None or half > limits.ci}


def widen_for_reruns(median: float, ci: tuple[float, float] | None, host_spread: float | None) -> list[float] | None:
    """A 95 % prediction interval for a rerun's median speed-up.

    The within-run interval `ci` around `median`, combined on the log scale with the
    between-run term, times sqrt(2): the rerun has its own host state and round noise.
    With no host-speed probe (`host_spread` None) only the sqrt(2) of the round noise is added.
    """
    if ci is None or median <= 0 or ci[0] <= 0:
        return list(ci) if ci else None
    # A rerun's median differs from this one by two runs' noise (its own and this run's): sqrt(2) on both terms.
    extra = Z95 * between_run_sd(host_spread)
    lo = np.sqrt(2.0) * np.hypot(np.log(median / ci[0]), extra)
    hi = np.sqrt(2.0) * np.hypot(np.log(ci[1] / median), extra)
    return [float(median * np.exp(-lo)), float(median * np.exp(hi))]


def row_stability(stats: Any, speedup: dict[str, Any] | None, reference_unstable: bool, machine: dict[str, Any],
                  limits: GuardLimits) -> dict[str, Any]:
    """A row's verdict: unstable when the machine was busy, its spread or speed-up interval too wide,
    or the reference it is compared to was unstable. `stats` is a `LatencyStats`."""
    reasons = [f"machine busy: {r}" for r in machine.get("reasons", [])]
    if stats.spread > limits.spread:
        reasons.append(f"spread IQR/p50 {100 * stats.spread:.0f}% > {100 * limits.spread:.0f}%")
    if speedup is not None and speedup["wide"]:
        half = speedup["ci_rel_halfwidth"]
        reasons.append("speed-up 95% interval " + ("needs >= 3 rounds" if half is None
                                                   else f"+/-{100 * half:.0f}% > +/-{100 * limits.ci:.0f}%"))
    if reference_unstable:
        reasons.append("the reference row at this batch size is unstable")
    return {"unstable": bool(reasons), "reasons": reasons, "spread": stats.spread, "cv": stats.cv}
