"""From timed cells to report rows: statistics, per-round speed-ups with intervals, stability, the headline pick.

The speed-up of a row is the median over rounds of (reference median / row
median) in the same round, with a 95 % interval that covers a rerun (the
within-run bootstrap widened by the host-speed probe's variation, see
`stability.speedup_summary`); a row is *unstable*
when the machine was busy, its own spread is too wide, its interval too wide,
or its reference unstable. The headline ("fastest artifact you can deploy")
only considers stable rows of backends the registry marks as deployable by the
torch-free runtime, and the rows it had to leave out are listed with it.
"""

from __future__ import annotations

from typing import Any

from dsedge.bench.latency import summarize
from dsedge.bench.rounds import Cell
from dsedge.bench.stability import GuardLimits, row_stability, speedup_summary


def timed_row(cell: Cell, ref: Cell | None, ref_unstable: bool, machine: dict[str, Any],
              limits: GuardLimits) -> dict[str, Any]:
    """The latency, speed-up and stability blocks of one measured cell (`ref` None: it is the reference)."""
    bs = cell.key[2]
    stats = summarize(cell.times_ms, bs)
    speed = None
    if ref is not None and len(ref.round_medians) == len(cell.round_medians):
        host_spread = (machine.get("host_probe") or {}).get("spread")  # the rerun term (issue 26)
        speed = speedup_summary(ref.round_medians, cell.round_medians, limits, host_spread)
    stability = row_stability(stats, speed, ref_unstable, machine, limits)
    return {
        "latency": {"host": stats.to_dict(), "warmup_s": cell.warmup_s, "iters_per_round": cell.iters,
                    "round_medians_ms": cell.round_medians},
        "speedup": 1.0 if ref is None else (speed["median"] if speed else None),
        "speedup_ci95": [1.0, 1.0] if ref is None else (speed["ci95"] if speed else None),
        "speedup_ci95_within_run": None if ref is None else (speed["ci95_within"] if speed else None),
        "speedup_rounds": speed["rounds"] if speed else None,
        "stability": stability,
    }


def _agreement(row: dict[str, Any]) -> float | None:
    return ((row.get("accuracy") or {}).get("agreement") or {}).get("top1_agreement")


def fastest(rows: list[dict[str, Any]], min_agreement: float | None = None) -> dict[str, Any]:
    """Per batch size: the fastest *stable, deployable* row, and the faster rows left out as unstable.

    With `min_agreement`, only rows whose measured top-1 agreement with the FP32
    reference reaches it count (rows without accuracy data are left out).
    """
    best: dict[str, Any] = {}
    for r in rows:
        if r["status"] != "ok" or not r.get("deployable") or r.get("speedup") is None:
            continue
        agree = _agreement(r)
        if min_agreement is not None and (agree is None or agree < min_agreement):
            continue
        key = str(r["batch_size"])
        entry = best.setdefault(key, {"label": None, "unstable_left_out": []})
        label = f"{r['backend']} {r['precision']}"
        if r["stability"]["unstable"]:
            entry["unstable_left_out"].append(label)
            continue
        p50 = r["latency"]["host"]["p50_ms"]
        if entry["label"] is None or p50 < entry["p50_ms"]:
            entry.update(label=label, p50_ms=p50, speedup=r["speedup"], speedup_ci95=r["speedup_ci95"],
                         top1_agreement=agree)
    return best


def recommendation(best_by_batch: dict[str, Any], batch_size: int | None = None) -> str:
    """One line: which row to ship — the fastest stable deployable row within the budget, at `batch_size`
    (default the smallest measured), or why none can be named."""
    if not best_by_batch:
        return "ship: no recommendation (no deployable row was measured)"
    key = str(batch_size) if batch_size is not None else min(best_by_batch, key=int)
    best = best_by_batch.get(key)
    if best is None:
        return f"ship: no recommendation at batch {key} (not measured)"
    if best.get("label") is None:
        return (f"ship: no recommendation at batch {key}: every deployable row within the budget was unstable "
                "(rerun on an idle machine)")
    ci = best.get("speedup_ci95")
    interval = f", 95% interval {ci[0]:.2f}-{ci[1]:.2f}x incl. rerun variation" if ci else ""
    return (f"ship {best['label']}: fastest deployable row within the budget at batch {key} "
            f"(p50 {best['p50_ms']:.2f} ms, {best['speedup']:.2f}x{interval})")
