"""`calibrate_bundle`: ISIC-calibrated INT8 in TensorRT's explicit Q/DQ form, within an accuracy budget.

The recipe is DESIGN §5's, verified in the feasibility run:

* `onnxruntime.quantization.quantize_static` with QDQ, S8S8, per-channel
  weights, symmetric activations and weights, biases left float
  (`QuantizeBias=False`: TensorRT's DequantizeLinear takes no INT32);
* SimAM stays the `dsedge::SimAM` model-local function, whose body ONNX
  Runtime's quantizer leaves alone, so only its input/output get Q/DQ. No
  `quant_pre_process` optimisation: it inlines the function (agreement 0.67);
* the calibrator is fed in chunks (ORT 1.32's Entropy/Percentile hold every
  activation of a `collect_data` call in RAM). Ranges are computed once and
  saved as ORT's JSON calibration cache; every candidate model (the full one,
  each sensitivity group, each float-fallback step) is then produced by
  `quantize_static(..., calibration_cache_path=...)` from the same ranges.

Every candidate passes `rules.check_qdq_rules` before it is written; nothing is
written into the bundle unless the model obeys TensorRT's rules and (with data)
meets `max_acc_drop`. Same bundle, data, options and seed give a byte-identical
`model.int8.onnx`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dsedge.calibration import reader as rd
from dsedge.calibration.rules import check_qdq_rules, format_violations
from dsedge.calibration.sensitivity import (
    compare,
    node_groups,
    resolve_keep_fp,
    save_report,
    select_float_groups,
)
from dsedge.errors import BundleError, CalibrationError, DataError
from dsedge.runtime.bundle import load_bundle
from dsedge.runtime.preprocess import preprocess_files
from dsedge.utils.io import atomic_path

INT8_NAME = "model.int8.onnx"
CACHE_NAME = "calibration.cache"
REPORT_STEM = "int8_sensitivity"
METHODS = ("entropy", "minmax", "percentile")
#: DESIGN §5: what TensorRT's parser accepts (symmetric S8S8, float biases).
EXTRA_OPTIONS: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
EVAL_BATCH = 16


def _method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    table = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }
    if name not in table:
        raise CalibrationError(f"unknown calibration method '{name}'", f"choose one of: {', '.join(METHODS)}")
    return table[name]


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """Silence ORT's quantization chatter.

    It logs 'consider pre-processing' warnings on the root logger (we skip
    pre-processing on purpose: it inlines SimAM) and `print`s histogram
    progress to stdout. Callers that draw progress bars should give their rich
    Console an explicit `file=` so it is not caught by this redirect.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _op_types() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def compute_ranges(
    model_path: Path,
    cset: rd.CalibrationSet,
    preprocessing: dict[str, Any],
    method: str,
    workdir: Path,
    chunk_images: int = rd.DEFAULT_CHUNK_IMAGES,
    batch: int = rd.DEFAULT_BATCH,
    on_images: Callable[[int], None] | None = None,
) -> Path:
    """Run the calibrator over `cset` chunk by chunk; save the ranges as ORT's JSON calibration cache."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    input_name = onnx.load(str(model_path), load_external_data=False).graph.input[0].name
    with _quiet_ort():
        calibrator = create_calibrator(
            Path(model_path),
            _op_types(),
            augmented_model_path=str(workdir / "augmented.onnx"),
            calibrate_method=_method(method),
            providers=["CPUExecutionProvider"],
            extra_options={},  # the same calibrator settings quantize_static uses with our options
        )
        for chunk in rd.iter_chunks(cset, preprocessing, input_name, chunk_images, batch, on_images):
            calibrator.collect_data(chunk)
        ranges = calibrator.compute_data()
    out = workdir / "ranges.json"
    save_tensors_data(ranges, out)
    return out


def ranges_minmax(ranges_path: Path) -> dict[str, tuple[float, float]]:
    """{tensor: (min, max)} from an ORT calibration cache file."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(ranges_path)
    out = {}
    for name, td in data.items():
        lo, hi = td.range_value
        out[name] = (float(np.min(lo)), float(np.max(hi)))
    return out


def quantize_with_ranges(
    model_path: Path,
    out_path: Path,
    ranges_path: Path,
    method: str,
    nodes_to_quantize: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] = (),
    extra_options: dict[str, Any] | None = None,
) -> Path:
    """`quantize_static` in TensorRT's Q/DQ form from precomputed ranges (no calibration run)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with _quiet_ort():
        quantize_static(
            str(model_path),
            str(out_path),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
            nodes_to_exclude=list(nodes_to_exclude),
            calibrate_method=_method(method),
            extra_options=dict(EXTRA_OPTIONS if extra_options is None else extra_options),
            calibration_cache_path=str(ranges_path),
        )
    return out_path


def predict_probs(model_path: Path, x: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Softmax probabilities of an ONNX model on a preprocessed batch (ORT CPU)."""
    from dsedge.engines.base import softmax
    from dsedge.engines.ort_runner import OrtRunner

    with OrtRunner(model_path, providers="CPUExecutionProvider") as runner:
        logits = np.concatenate([runner.infer(x[i : i + batch]) for i in range(0, len(x), batch)])
    return softmax(logits)


def _split_tokens(keep_fp: Sequence[str] | str) -> list[str]:
    items = [keep_fp] if isinstance(keep_fp, str) else list(keep_fp)
    return [t.strip() for item in items for t in str(item).split(",") if t.strip()]


def _versions() -> dict[str, str]:
    import onnxruntime

    from dsedge import __version__

    return {"dsedge": __version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "numpy": np.__version__}


def calibrate_bundle(
    bundle: str | Path,
    data: str | Path | None,
    *,
    method: str = "entropy",
    num_images: int = 512,
    seed: int = 0,
    keep_fp: Sequence[str] | str = (),
    max_acc_drop: float = 0.5,
    min_agreement: float = 0.0,
    split: str = "train",
    eval_split: str = "val",
    write_cache: bool = False,
    sensitivity: bool = True,
    synthetic: bool = False,
    chunk_images: int = rd.DEFAULT_CHUNK_IMAGES,
    on_images: Callable[[int], None] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write `model.int8.onnx` (TensorRT Q/DQ) into `bundle`, calibrated on `data`'s `split`.

    With data, the FP32 and INT8 models are compared on `eval_split`; when the
    ACC drop exceeds `max_acc_drop` points (or top-1 agreement with FP32 falls
    below `min_agreement`, off by default) and `sensitivity` is on, groups are
    kept in float (most harmful first) until it holds, else a `CalibrationError`
    is raised and nothing is written. `data=None, synthetic=True` calibrates on
    seeded random images (smoke tests and latency only; recorded as
    `"synthetic": true`, no accuracy check). Returns the manifest's
    `calibration` record plus `output` (the INT8 path) and `sensitivity` (the report dict or None).
    """
    say = on_step or (lambda _m: None)
    b = load_bundle(bundle)
    if not b.find("onnx", "fp32"):
        raise BundleError(
            f"bundle {b.root} has no FP32 model.onnx to calibrate", "run `dsedge export` to create the bundle first"
        )
    model_path = b.require("onnx", "fp32")
    _method(method)
    if max_acc_drop < 0:
        raise CalibrationError(f"--max-acc-drop must be >= 0 points, got {max_acc_drop}")
    if not 0.0 <= min_agreement <= 1.0:
        raise CalibrationError(f"--min-agreement must be a fraction in [0, 1], got {min_agreement}")
    preprocessing = b.preprocessing
    model = onnx.load(str(model_path))
    tokens = _split_tokens(keep_fp)
    base_exclude = resolve_keep_fp(model, tokens)

    evalset = None
    data_fingerprint = None
    if data is None:
        if not synthetic:
            raise CalibrationError(
                "no calibration data given", "pass --data DIR (ISIC training images), or --synthetic for a smoke test"
            )
        cset = rd.synthetic_set(num_images, seed)
    else:
        if synthetic:
            raise CalibrationError("--synthetic and --data exclude each other")
        from dsedge.data import available_splits, load_split

        train = load_split(data, split, classes=b.classes)
        cset = rd.select_images(train, num_images, seed)
        data_fingerprint = train.fingerprint()
        if eval_split not in available_splits(data):
            raise DataError(
                f"{data} has no '{eval_split}' split to check INT8 accuracy on",
                f"pass --eval-split one of: {', '.join(available_splits(data))}",
            )
        evalset = load_split(data, eval_split, classes=b.classes)
        if len(evalset) == 0:
            raise DataError(f"split '{eval_split}' of {data} has no images")

    with tempfile.TemporaryDirectory(prefix="dsedge-int8-") as tmp_name:
        tmp = Path(tmp_name)
        say(f"calibrating on {len(cset)} {'synthetic ' if cset.synthetic else ''}images ({method})")
        ranges_path = compute_ranges(model_path, cset, preprocessing, method, tmp, chunk_images, on_images=on_images)
        counter = iter(range(1_000_000))

        def build(nodes_q: list[str] | None, exclude: list[str]) -> Path:
            out = quantize_with_ranges(model_path, tmp / f"cand{next(counter)}.onnx", ranges_path, method, nodes_q,
                                       exclude)
            violations = check_qdq_rules(out, require_qdq=False)
            if violations:
                raise CalibrationError(
                    "the quantized model breaks TensorRT's Q/DQ rules:\n" + format_violations(violations),
                    "this is a dsedge bug or an unsupported onnxruntime version; please report it",
                )
            return out

        report = None
        accuracy = None
        if evalset is not None:
            say(f"FP32 reference on {len(evalset)} '{eval_split}' images")
            x_val = preprocess_files([s.path for s in evalset.samples], preprocessing)
            labels = np.asarray(evalset.labels)
            ref_probs = predict_probs(model_path, x_val)
            from dsedge.train.metrics import classification_metrics

            ref = classification_metrics(labels, ref_probs, b.classes)
            ref_row = {k: ref[k] for k in ("accuracy", "balanced_accuracy", "mean_auc", "mel_auc", "sk_auc")}

            def evaluate(path: Path) -> dict[str, Any]:
                return compare(ref, predict_probs(path, x_val), labels, b.classes, ref_probs)

            chosen, excluded, report = select_float_groups(
                node_groups(model), base_exclude, build, evaluate, ref_row, max_acc_drop, len(evalset),
                analyse=sensitivity, on_step=say, min_agreement=min_agreement,
            )
            if not report.met_budget:
                fin = report.final
                floor = f" (needs >= {100 * min_agreement:g} %)" if min_agreement else ""
                raise CalibrationError(
                    f"INT8 misses the accuracy budget: ACC drop {fin['acc_drop_points']:.2f} points "
                    f"(budget {max_acc_drop:g}), top-1 agreement {100 * fin['top1_agreement']:.1f} %{floor}; "
                    f"float groups tried: {', '.join(report.kept_float) or 'none'}; nothing was written",
                    "raise --max-acc-drop, add --keep-fp groups (e.g. depthwise), calibrate on more images"
                    + ("" if sensitivity else ", or enable --sensitivity"),
                )
            accuracy = {"split": eval_split, "n": len(evalset), "fp32": ref_row, "int8": report.final}
        else:
            say("quantizing")
            chosen, excluded = build(None, base_exclude), base_exclude
            predict_probs(chosen, cset.load(0, 1, preprocessing))  # it must at least run

        violations = check_qdq_rules(chosen)
        if violations:
            raise CalibrationError("refusing to write an INT8 model TensorRT would reject:\n"
                                   + format_violations(violations))

        record: dict[str, Any] = {
            "method": method,
            "num_images": len(cset),
            "seed": seed,
            "split": None if cset.synthetic else split,
            "image_list_sha256": cset.sha256(),
            "data_fingerprint": data_fingerprint,
            "class_counts": cset.class_counts,
            "synthetic": cset.synthetic,
            "chunk_images": chunk_images,
            "keep_fp": tokens,
            "excluded_nodes": sorted(excluded),
            "kept_float_groups": report.kept_float if report else [],
            "quantization": {"format": "QDQ", "activations": "int8 per-tensor symmetric",
                             "weights": "int8 per-channel symmetric", "bias": "float", **EXTRA_OPTIONS},
            "max_acc_drop_points": max_acc_drop,
            "min_top1_agreement": min_agreement,
            "accuracy": accuracy,
            "versions": _versions(),
        }
        # -- everything checked: write into the bundle (each file atomically, the manifest last)
        with atomic_path(b.root / INT8_NAME) as t:
            shutil.copyfile(chosen, t)
        simam = b.artifacts[model_path.name].get("simam")
        b.add_artifact(INT8_NAME, "onnx", "int8", simam=simam, source=model_path.name, qdq="tensorrt")
        if write_cache:
            from dsedge.calibration.trt_cache import DEFAULT_TRT_VERSION, write_calibration_table

            write_calibration_table(ranges_minmax(ranges_path), b.root / CACHE_NAME, method)
            b.add_artifact(CACHE_NAME, "calibration-cache", "int8", for_model=model_path.name,
                           trt_version=DEFAULT_TRT_VERSION)
        elif CACHE_NAME in b.artifacts:  # a table from an earlier calibration no longer matches
            b.artifacts.pop(CACHE_NAME)
            (b.root / CACHE_NAME).unlink(missing_ok=True)
        if report is not None:
            jpath, mpath = save_report(report, b.root, REPORT_STEM)
            record["report"] = [jpath.name, mpath.name]
        b.manifest["calibration"] = record
        b.save()
    say(f"wrote {b.root / INT8_NAME}")
    return {**record, "output": str(b.root / INT8_NAME), "sensitivity": report.to_dict() if report else None}
