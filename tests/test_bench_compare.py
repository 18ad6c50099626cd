"""Two bench.json files: per-row batch-1 speed-ups side by side, flagged outside +/-10 % or unstable."""

from __future__ import annotations

import json
from pathlib import Path

from dsedge.bench.compare import compare, main


def _write(path: Path, speedups: dict[str, float], unstable: tuple[str, ...] = (), probe: float | None = None) -> Path:
    rows = []
    for label, s in speedups.items():
        backend, precision = label.split()
        for bs in (1, 8):
            rows.append({"backend": backend, "precision": precision, "batch_size": bs, "status": "ok",
                         "speedup": s, "stability": {"unstable": label in unstable}})
    rows.append({"backend": "tensorrt", "precision": "int8", "batch_size": 1, "status": "skipped", "reason": "x"})
    data: dict = {"rows": rows}
    if probe is not None:
        data["stability"] = {"host_probe": {"p50_ms": probe, "spread": 0.05}}
    path.write_text(json.dumps(data))
    return path


def test_runs_within_tolerance_pass(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", {"torch fp32": 1.0, "openvino int8": 4.8, "onnxruntime fp32": 1.8})
    b = _write(tmp_path / "b.json", {"torch fp32": 1.0, "openvino int8": 5.1, "onnxruntime fp32": 1.75})
    lines, ok = compare(a, b)
    assert ok and len(lines) == 5
    assert "| openvino int8 | 4.80x | 5.10x | +6.2% | ok |" in lines
    assert main([str(a), str(b)]) == 0


def test_a_drift_or_an_unstable_row_fails(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", {"torch fp32": 1.0, "openvino bf16": 3.0})
    b = _write(tmp_path / "b.json", {"torch fp32": 1.0, "openvino bf16": 3.6})
    lines, ok = compare(a, b)
    assert not ok and "| openvino bf16 | 3.00x | 3.60x | +20.0% | outside +/-10% |" in lines
    c = _write(tmp_path / "c.json", {"torch fp32": 1.0, "openvino bf16": 3.0}, unstable=("openvino bf16",))
    lines, ok = compare(a, c)
    assert not ok and lines[-1].endswith("| unstable |")
    assert main([str(a), str(b)]) == 1


def test_a_host_at_another_speed_fails_the_comparison(tmp_path: Path) -> None:
    rows = {"torch fp32": 1.0, "openvino int8": 5.0}
    a = _write(tmp_path / "a.json", rows, probe=1.50)
    same = _write(tmp_path / "b.json", rows, probe=1.45)
    lines, ok = compare(a, same)
    assert ok and lines[-1] == "host-speed probe p50: 1.50 ms vs 1.45 ms (-3.3%)"
    faster = _write(tmp_path / "c.json", rows, probe=1.05)  # the host 30 % faster: speed-ups are not comparable
    lines, ok = compare(a, faster)
    assert not ok and "-30.0%" in lines[-1] and "different speed" in lines[-1]
    assert all(line.endswith("| ok |") for line in lines[2:4])  # the rows themselves agree
    assert main([str(a), str(faster)]) == 1
    old = _write(tmp_path / "d.json", rows)  # a bench.json from before the probe: no host line
    lines, ok = compare(a, old)
    assert ok and not any("probe" in line for line in lines)
