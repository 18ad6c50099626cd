"""benchmarks/qdq_placement.py: four placements of the same ranges, each counted against FP32 (tiny model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("qdq_placement", ROOT / "benchmarks" / "qdq_placement.py")
qp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qp)


def test_every_placement_is_built_and_counted(tmp_path: Path, tiny_isic_session: Path) -> None:
    from dsedge.export.bundle import export_bundle

    bundle = export_bundle(None, tmp_path / "bundle", model_name="ds_resnet50", random_init=True, image_size=32)
    md = tmp_path / "placement.md"
    assert qp.main([str(bundle), "--data", str(tiny_isic_session), "--num-images", "8", "--views", "2",
                    "--runtime", "onnxruntime", "--md", str(md)]) == 0
    rows = [line.split("|")[1:-1] for line in md.read_text().splitlines() if line.startswith("| ") and "%" in line]
    assert [r[0].strip() for r in rows] == ["ort-default", "weighted", "weighted-dw-float", "calibrate-default"]
    shares = [float(r[1].strip(" %")) for r in rows]
    assert shares[0] == shares[1] > shares[2] == shares[3] > 90  # the depthwise convs hold ~1 % of the MACs
    assert all(int(r[2]) >= 0 for r in rows)
