"""Calibration method per tensor (`--method auto`): entropy, percentile or minmax, whichever fits each tensor.

No single method suits every activation of DS-ResNet50: minmax keeps the
outliers of the post-ReLU sums but wastes resolution on long tails, entropy and
percentile clip tails that some depthwise outputs need. `auto` computes the
ranges with all three methods on the calibration images, then, for each tensor,
measures on a *selection subset* — further training images, disjoint from both
the calibration images and the eval split the budget is judged on — the mean
squared error that symmetric INT8 with each method's range causes, and keeps
the range with the smallest error. The merged ranges are written as one ORT
calibration cache (MinMax form: only `lowest`/`highest` are used by the QDQ
quantizer), so everything downstream (sensitivity search, rule checker,
determinism) works unchanged. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

#: The methods `auto` chooses among, in tie-break order.
CANDIDATES = ("entropy", "percentile", "minmax")
#: Extra training images the per-tensor choice is made on, at most.
DEFAULT_SELECT_IMAGES = 64
SELECT_BATCH = 4


def symmetric_int8_mse(x: np.ndarray, lo: float, hi: float) -> float:
    """Sum of squared errors of `x` after symmetric INT8 fake quantization with range [lo, hi].

    ONNX Runtime's symmetric INT8 uses scale = max(|lo|, |hi|) / 127 and codes -127..127.
    """
    amax = max(abs(float(lo)), abs(float(hi)))
    if amax <= 0.0 or not np.isfinite(amax):
        return float(np.sum(np.square(x, dtype=np.float64)))
    scale = amax / 127.0
    q = np.clip(np.rint(x / scale), -127, 127) * scale
    return float(np.sum(np.square(x - q, dtype=np.float64)))


def _with_outputs(model_path: Path, names: Sequence[str], out_path: Path) -> list[str]:
    """Copy of the model that also outputs `names`; returns the names it could expose."""
    model = onnx.load(str(model_path))
    existing = {o.name for o in model.graph.output}
    produced = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    added = [n for n in names if n in produced and n not in existing]
    for name in added:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(out_path))
    return added + [n for n in names if n in existing]


def tensor_errors(
    model_path: Path,
    ranges_by_method: dict[str, dict[str, tuple[float, float]]],
    batches: Iterable[np.ndarray],
    workdir: Path,
) -> dict[str, dict[str, float]]:
    """{tensor: {method: squared error summed over the selection images}} for every calibrated tensor."""
    import onnxruntime as ort

    names = sorted(set.intersection(*(set(r) for r in ranges_by_method.values())))
    augmented = workdir / "select_outputs.onnx"
    exposed = _with_outputs(model_path, names, augmented)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(augmented), opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    errors: dict[str, dict[str, float]] = {n: dict.fromkeys(ranges_by_method, 0.0) for n in exposed}
    for x in batches:
        values = sess.run(exposed, {input_name: x})
        for name, v in zip(exposed, values, strict=True):
            if v.dtype.kind != "f":
                continue
            for method, ranges in ranges_by_method.items():
                errors[name][method] += symmetric_int8_mse(v, *ranges[name])
    return errors


def choose_per_tensor(errors: dict[str, dict[str, float]], order: Sequence[str] = CANDIDATES) -> dict[str, str]:
    """{tensor: method with the smallest error}; ties go to the earlier method in `order`."""
    rank = {m: i for i, m in enumerate(order)}
    return {name: min(per, key=lambda m: (per[m], rank.get(m, len(rank)))) for name, per in errors.items()}


def write_merged_ranges(
    ranges_by_method: dict[str, dict[str, tuple[float, float]]], choice: dict[str, str], out: Path,
    fallback: str = CANDIDATES[0],
) -> Path:
    """An ORT calibration cache (MinMax form) taking each tensor's range from its chosen method."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data: dict[str, Any] = {}
    for name in sorted(ranges_by_method[fallback]):
        lo, hi = ranges_by_method[choice.get(name, fallback)][name]
        data[name] = TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), out)
    return out


def summarize(choice: dict[str, str]) -> dict[str, int]:
    """How many tensors took each method (recorded in the manifest)."""
    out: dict[str, int] = {}
    for method in choice.values():
        out[method] = out.get(method, 0) + 1
    return dict(sorted(out.items()))
