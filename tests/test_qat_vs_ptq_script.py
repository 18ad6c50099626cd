"""benchmarks/qat_vs_ptq.py: the bundle's weights and other weights, quantized alike, counted against the bundle."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("qat_vs_ptq", ROOT / "benchmarks" / "qat_vs_ptq.py")
qv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qv)


def test_both_weights_in_every_layout_are_counted(tmp_path: Path, tiny_isic_session: Path,
                                                   tiny_bundle_pair: tuple[Path, Path, Path]) -> None:
    bundle, _, other = tiny_bundle_pair
    md = tmp_path / "qat.md"
    assert qv.main([str(bundle), "--weights", str(other), "--data", str(tiny_isic_session), "--num-images", "8",
                    "--views", "2", "--runtime", "onnxruntime", "--md", str(md)]) == 0
    rows = [line.split("|")[1:-1] for line in md.read_text().splitlines() if line.startswith("| ") and "%" in line]
    assert [r[1].strip() for r in rows] == ["bundle (PTQ)", "QAT"] * 3
    shares = [float(r[2].strip(" %")) for r in rows]
    assert shares[0] == shares[1] < shares[2] == shares[3] <= shares[4] == shares[5] == 100.0  # fc: < 0.1 %
    n = int(re.search(r"= (\d+) inputs", md.read_text()).group(1))
    assert all(0 <= int(r[4]) <= int(r[3]) <= n for r in rows) and n > 0
    assert all(float(r[5]) > 0 for r in rows)  # random weights: INT8 moves every probability a little
