"""benchmarks/cam_latency.py runs end to end (numbers from a tiny model mean nothing; the table does)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tiny_bundle import make_tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


def test_cam_latency_script_times_both_models(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("cam_latency", ROOT / "benchmarks" / "cam_latency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bundle = make_tiny_bundle(tmp_path / "b")
    out = tmp_path / "r.md"
    assert mod.main([str(bundle), "--runs", "3", "--warmup", "1", "--threads", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| logits |" in text and "| logits + cam |" in text and "cam overhead at p50" in text
