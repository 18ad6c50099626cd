"""Do two bench runs agree? Per-row speed-ups of two bench.json files side by side, with their difference.

The reproducibility target: two runs on an idle machine give every batch-1
speed-up within +/-10 % of each other. Usage::

    python -m dsedge.bench.compare run1/bench.json run2/bench.json [--batch 1] [--tolerance 0.10]

prints a Markdown table (ready for benchmarks/RESULTS.md) and exits 1 when a
row differs by more than the tolerance or is unstable in either run. Runs that
recorded the guard's host-speed probe also get a line comparing the host's
speed (probe p50) in the two runs: on a VM the host can be 30 % slower in one
run than in the other with an idle guest, and the rows do not slow down alike
(PyTorch eager more than ONNX Runtime or OpenVINO), so speed-ups from two host
states differ however long each run measures. A probe difference above the
tolerance fails the comparison too: the runs compare the host, not the bench.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _speedups(path: Path, batch: int) -> dict[str, dict[str, Any]]:
    data = json.loads(Path(path).read_text())
    return {f"{r['backend']} {r['precision']}": r for r in data["rows"]
            if r["status"] == "ok" and r["batch_size"] == batch and r.get("speedup") is not None}


def _probe_p50(path: Path) -> float | None:
    probe = (json.loads(Path(path).read_text()).get("stability") or {}).get("host_probe") or {}
    return probe.get("p50_ms")


def _host_line(a: Path, b: Path, tolerance: float) -> tuple[str | None, bool]:
    p1, p2 = _probe_p50(a), _probe_p50(b)
    if not p1 or not p2:
        return None, True
    diff = p2 / p1 - 1.0
    ok = abs(diff) <= tolerance
    return (f"host-speed probe p50: {p1:.2f} ms vs {p2:.2f} ms ({100 * diff:+.1f}%)"
            + ("" if ok else f": the host ran at a different speed (outside +/-{100 * tolerance:.0f}%)")), ok


def compare(a: Path, b: Path, batch: int = 1, tolerance: float = 0.10) -> tuple[list[str], bool]:
    """(Markdown lines, every row within tolerance and stable in both runs, and the host alike in both)."""
    first, second = _speedups(a, batch), _speedups(b, batch)
    lines = [f"| row (batch {batch}) | run 1 | run 2 | difference | verdict |", "|---|---|---|---|---|"]
    all_ok = True
    for label in [k for k in first if k in second]:
        s1, s2 = first[label]["speedup"], second[label]["speedup"]
        diff = s2 / s1 - 1.0
        unstable = first[label]["stability"]["unstable"] or second[label]["stability"]["unstable"]
        ok = abs(diff) <= tolerance and not unstable
        all_ok &= ok
        verdict = "ok" if ok else ("unstable" if unstable else f"outside +/-{100 * tolerance:.0f}%")
        lines.append(f"| {label} | {s1:.2f}x | {s2:.2f}x | {100 * diff:+.1f}% | {verdict} |")
    host, host_ok = _host_line(a, b, tolerance)
    if host is not None:
        lines += ["", host]
    return lines, all_ok and host_ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=0.10)
    args = ap.parse_args(argv)
    lines, ok = compare(args.first, args.second, args.batch, args.tolerance)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
