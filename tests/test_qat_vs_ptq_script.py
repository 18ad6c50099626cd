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
    assert [r[1].strip() for r in rows] == ["bundle (PTQ)", "bundle, weights INT8 only", "QAT"] + ["bundle (PTQ)", "QAT"] * 2
    shares = [float(r[2].strip(" %")) for r in rows]
    assert shares[1] == 0.0  # no conv reads INT8 data
    assert shares[0] == shares[2] < shares[3] == shares[4] <= shares[5] == shares[6] == 100.0  # fc: < 0.1 %
    n = int(re.search(r"= (\d+) inputs", md.read_text()).group(1))
    assert all(0 <= int(r[4]) <= int(r[3]) <= n for r in rows) and n > 0
    assert all(float(r[5]) > 0 for r in rows)  # random weights: INT8 moves every probability a little


def test_inputs_float_leaves_only_the_weights_quantized(tmp_path: Path, tiny_isic_session: Path,
                                                       tiny_bundle_pair: tuple[Path, Path, Path]) -> None:
    """The weights-only file: no activation Q -> DQ left, every weight still INT8, closer to FP32 than the full file."""
    import numpy as np
    import onnx

    from dsedge.bundle import load_bundle
    from dsedge.calibration import int8
    from dsedge.calibration import reader as rd
    from dsedge.data.loader import load_split

    b = load_bundle(tiny_bundle_pair[0])
    fp32 = b.root / "model.onnx"
    cset = rd.select_images(load_split(tiny_isic_session, "train", classes=b.classes), 8, seed=0)
    ranges = int8.compute_ranges(fp32, cset, b.preprocessing, "percentile", tmp_path)
    full = int8.quantize_with_ranges(fp32, tmp_path / "full.onnx", ranges, "percentile")
    model = onnx.load(str(full))
    weighted = sum(n.op_type in ("Conv", "Gemm") for n in model.graph.node)
    assert qv.inputs_float(model) == weighted
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert all(getattr(producer.get(n.input[0]), "op_type", None) != "DequantizeLinear" for n in convs)
    assert all(producer[n.input[1]].op_type == "DequantizeLinear" for n in convs)
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    assert all(any(o in used for o in n.output) for n in model.graph.node if "Quantize" in n.op_type)
    onnx.save(model, str(tmp_path / "w.onnx"))
    x, _ = int8.eval_inputs(load_split(tiny_isic_session, "val", classes=b.classes), b.preprocessing, 2)
    ref = int8.predict_probs(fp32, x)
    err = {k: float(np.abs(int8.runtime_probs(p, x, "onnxruntime") - ref).mean())
           for k, p in (("full", full), ("weights", tmp_path / "w.onnx"))}
    assert 0 < err["weights"] < err["full"]
