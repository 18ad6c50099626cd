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
meets the budget (`budget.py`: agreement with FP32, melanoma AUC, ACC,
melanoma recall). `--method auto` picks the method per tensor (`methods.py`).
Next to `model.int8.onnx` goes `model.int8-fp16.onnx`, the same quantization
with FP16 float layers for TensorRT's strong typing (`mixed_fp16.py`). The
bundle is updated atomically (`dsedge.export.bundle_update`): an interrupted
calibration never leaves a bundle that fails its sha256 check. Same bundle,
data, options and seed give a byte-identical `model.int8.onnx`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dsedge.bundle import (
    CALIBRATION_CACHE,
    Bundle,
    BundleUpdate,
    bundle_update,
    load_bundle,
    onnx_file,
)
from dsedge.calibration import methods as per_tensor
from dsedge.calibration import reader as rd
from dsedge.calibration.budget import (
    Budget,
    describe,
    failed_terms,
    mel_referrals_changed,
    operating_point,
)
from dsedge.calibration.histogram import install_fast_histogram
from dsedge.calibration.macs import MIN_INT8_MAC_FRACTION, int8_mac_fraction
from dsedge.calibration.mixed_fp16 import MIXED_NAME, MIXED_PRECISION, to_mixed_fp16
from dsedge.calibration.rules import check_qdq_rules, format_violations
from dsedge.calibration.sensitivity import (
    SEARCHES,
    SensitivityReport,
    block_groups,
    block_parts,
    compare,
    grow_int8_groups,
    node_groups,
    resolve_keep_fp,
    select_float_groups,
    to_markdown,
)
from dsedge.config import DEFAULT_CALIBRATION_METHOD, DEFAULT_KEEP_FP
from dsedge.engines.base import predict_probs as runner_probs
from dsedge.errors import BundleError, CalibrationError, DataError
from dsedge.machine import package_versions
from dsedge.runtime.preprocess import DIHEDRAL_VIEWS, dihedral_views, preprocess_files
from dsedge.utils.io import atomic_write_json

INT8_NAME = onnx_file("int8")
CACHE_NAME = CALIBRATION_CACHE.filename
REPORT_STEM = "int8_sensitivity"
METHODS = ("percentile", "minmax", "entropy", "auto")
#: The default, chosen on 400 held-out *training* images (never the eval split) of the shipped model,
#: 512 calibration images: agreement with FP32 / mean |prob diff| — percentile 99.99: 96.25 % / 0.0131;
#: 99.95: 95.0 %; 99.999: 95.0 %; 99.9: 94.75 %; minmax 91.5 % / 0.0234 (benchmarks/RESULTS.md).
DEFAULT_METHOD = DEFAULT_CALIBRATION_METHOD
#: DESIGN §5: what TensorRT's parser accepts (symmetric S8S8, float biases).
EXTRA_OPTIONS: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
EVAL_BATCH = 16
#: Histogram settings per calibration method (DESIGN §6). ORT's own Entropy default (128 bins, 128
#: quantized bins) leaves the KL search one candidate per histogram, the full range; what clipping
#: our old "entropy" did came only from histograms growing as calibration chunks merged.
#: TensorRT's entropy calibrator uses 2,048 bins and 128 levels per side; on ORT's symmetric
#: histogram that is 256 quantized bins.
CALIBRATOR_OPTIONS: dict[str, dict[str, Any]] = {
    "entropy": {"num_bins": 2048, "num_quantized_bins": 256},
    "percentile": {"num_bins": 2048, "percentile": 99.99, "symmetric": True},
    "minmax": {},
}


def _method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    table = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }
    if name == "auto":
        return table["minmax"]  # merged per-tensor ranges are stored in MinMax form
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


#: Q/DQ goes on the inputs of the weighted ops only (TensorRT's placement advice: "quantize all
#: inputs of weighted operations"); residual Adds, ReLU and pooling stay float. ONNX Runtime's
#: default also quantizes every Add, which put the residual stream through per-tensor INT8 after
#: each block. At 224 px, every conv INT8 but the head: 46 of 600 val views flipped with ORT's
#: placement, 11 with calibrate's (benchmarks/qdq_placement.py). The INT8 MAC share is the same.
QUANTIZED_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _op_types() -> list[str]:
    """The op types whose tensors get ranges: all ORT can quantize (its Q/DQ placement may ask for a
    neighbour's range, e.g. a ReLU output it folds into a conv), not only `QUANTIZED_OP_TYPES`."""
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
    fast_histogram: bool = True,
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
            extra_options=dict(CALIBRATOR_OPTIONS[method]),
        )
        if fast_histogram:
            install_fast_histogram(calibrator)  # percentile: linear-time histograms (calibration/histogram.py)
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
    op_types: Sequence[str] = QUANTIZED_OP_TYPES,
    float_residual: bool = True,
) -> Path:
    """`quantize_static` in TensorRT's Q/DQ form from precomputed ranges (no calibration run).

    `op_types` and `float_residual` are the Q/DQ placement (defaults: weighted ops only, their
    non-weighted readers rewired to float; `_op_types()` and False give ONNX Runtime's own placement,
    kept for benchmarks/qdq_placement.py).
    """
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
            op_types_to_quantize=list(op_types),
            calibrate_method=_method(method),
            extra_options=dict(EXTRA_OPTIONS if extra_options is None else extra_options),
            calibration_cache_path=str(ranges_path),
        )
    model = onnx.load(str(out_path))
    if float_residual and unweighted_reads_float(model):
        onnx.save(model, str(out_path))
    return out_path


def unweighted_reads_float(model: onnx.ModelProto) -> int:
    """Rewire every non-weighted consumer of a Q -> DQ pair to the float tensor before it; returns how many.

    ONNX Runtime gives a quantized tensor one DequantizeLinear for all its consumers, so a block's
    input reached its residual Add (and ReLU, pooling) through INT8 too. Only the convs need it:
    with the identity path float, all-INT8 at 224 px flipped 11 instead of 27 of 600 val views.
    TensorRT reads the graph the same way: a Q/DQ pair in front of each weighted op.
    """
    skip = (*QUANTIZED_OP_TYPES, "QuantizeLinear", "DequantizeLinear")
    return reads_float(model, lambda node: () if node.op_type in skip else range(len(node.input)))


def reads_float(model: onnx.ModelProto, slots: Callable[[onnx.NodeProto], Iterable[int]]) -> int:
    """Rewire the input `slots(node)` of every node that reads a Q -> DQ pair to the float tensor before it.

    Returns how many inputs were rewired; Q / DQ nodes nothing reads any more are removed.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    rewired = 0
    for node in model.graph.node:
        for i in slots(node):
            dq = producer.get(node.input[i])
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
                rewired += 1
    for op in ("DequantizeLinear", "QuantizeLinear"):  # pairs nothing reads any more
        used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type == op and n.output[0] not in used]
        for n in dead:
            model.graph.node.remove(n)
    return rewired


def predict_probs(model_path: Path, x: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Softmax probabilities of an ONNX model on a preprocessed batch (ORT CPU, unpadded chunks of `batch`)."""
    from dsedge.engines.ort_runner import OrtRunner

    with OrtRunner(model_path, providers="CPUExecutionProvider") as runner:
        return runner_probs(runner, x, batch, pad=False)


def _split_tokens(keep_fp: Sequence[str] | str) -> list[str]:
    items = [keep_fp] if isinstance(keep_fp, str) else list(keep_fp)
    tokens = [t.strip() for item in items for t in str(item).split(",") if t.strip()]
    return [] if tokens == ["none"] else tokens


def _versions() -> dict[str, str]:
    from dsedge import __version__

    return {"dsedge": __version__, **package_versions(("onnxruntime", "onnx", "numpy"), missing="not installed"),
            **package_versions(("onnxruntime-gpu",))}


@dataclass
class _Job:
    """What one calibration works on, resolved and validated before any work is done."""

    bundle: Bundle
    model_path: Path
    model: onnx.ModelProto
    tokens: list[str]
    base_exclude: list[str]
    cset: rd.CalibrationSet
    select_set: rd.CalibrationSet | None
    evalset: Any
    data_fingerprint: str | None
    budget: Budget
    reportset: Any = None
    roles_source: str | None = None
    #: `--weights`: the same graph exported from other (QAT) weights; it is quantized, model_path stays the reference
    source_path: Path | None = None
    weights: dict[str, Any] | None = None

    @property
    def quantize_from(self) -> Path:
        """The FP32 file the INT8 candidates are made from (the ranges and the reference are `model_path`'s)."""
        return self.source_path or self.model_path

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.bundle.preprocessing


def _select_set(train: Any, cset: rd.CalibrationSet, want: int, seed: int) -> rd.CalibrationSet | None:
    """Training images for `--method auto`'s per-tensor choice: disjoint from `cset` (and from the eval split)."""
    used = set(cset.paths)
    rest = [s for s in train.samples if s.path not in used]
    n = min(want, len(rest))
    if n < rd.MIN_CALIBRATION_IMAGES:
        return None
    rng = np.random.default_rng([seed, 1])
    picked = [rest[i] for i in sorted(rng.choice(len(rest), size=n, replace=False))]
    return rd.CalibrationSet(ids=tuple(s.path.name for s in picked), paths=tuple(s.path for s in picked),
                             labels=tuple(s.label for s in picked), seed=seed, source="select")


def _resolve(bundle: str | Path, data: str | Path | None, method: str, num_images: int, seed: int,
             keep_fp: Sequence[str] | str, split: str, eval_split: str, synthetic: bool, budget: Budget,
             select_images: int) -> _Job:
    """Step 1: load and check the bundle, the options and the data (raises before anything is written)."""
    b = load_bundle(bundle)
    if not b.find("onnx", "fp32"):
        raise BundleError(
            f"bundle {b.root} has no FP32 model.onnx to calibrate", "run `dsedge export` to create the bundle first"
        )
    model_path = b.require("onnx", "fp32")
    _method(method)
    if budget.min_agreement is not None and not 0.0 <= budget.min_agreement <= 1.0:
        raise CalibrationError(f"--min-agreement must be a fraction in [0, 1], got {budget.min_agreement}")
    for name in ("max_mel_auc_delta", "max_acc_delta_points", "max_mean_auc_delta"):
        value = getattr(budget, name)
        if value is not None and value < 0:
            raise CalibrationError(f"budget term {name} must be >= 0, got {value}")
    model = onnx.load(str(model_path))
    tokens = _split_tokens(keep_fp)
    base_exclude = resolve_keep_fp(model, tokens)
    if data is None:
        if not synthetic:
            raise CalibrationError(
                "no calibration data given", "pass --data DIR (ISIC training images), or --synthetic for a smoke test"
            )
        cset = rd.synthetic_set(num_images, seed)
        select = rd.synthetic_set(min(select_images, 8), seed + 1) if method == "auto" else None
        return _Job(b, model_path, model, tokens, base_exclude, cset, select, None, None, budget)
    if synthetic:
        raise CalibrationError("--synthetic and --data exclude each other")
    from dsedge.data import available_splits, load_split

    train = load_split(data, split, classes=b.classes)
    cset = rd.select_images(train, num_images, seed)
    if eval_split not in available_splits(data):
        raise DataError(
            f"{data} has no '{eval_split}' split to check INT8 accuracy on",
            f"pass --eval-split one of: {', '.join(available_splits(data))}",
        )
    evalset, reportset, source = _eval_roles(b, data, eval_split)
    select = _select_set(train, cset, select_images, seed) if method == "auto" else None
    if method == "auto" and select is None:
        raise CalibrationError(
            f"--method auto needs at least {rd.MIN_CALIBRATION_IMAGES} training images beside the "
            f"{len(cset)} calibration images to choose on",
            "lower --num-images, or pick one method (entropy, percentile, minmax)",
        )
    return _Job(b, model_path, model, tokens, base_exclude, cset, select, evalset, train.fingerprint(), budget,
                reportset, source)


def _eval_roles(b: Bundle, data: str | Path, eval_split: str) -> tuple[Any, Any, str]:
    """(tuning, reporting, source) for the budget search and the agreement claim (DESIGN §3a).

    With a tuning slice held out at training, it tunes and `eval_split` reports. Otherwise
    `eval_split` is the only data the weights never saw: a seeded, stratified half of it tunes
    the keep-float search and the other half measures the claim, so the number the bundle
    states was not chosen on the images it is measured on.
    """
    from dsedge.data.roles import resolve_roles, stratified_halves

    roles = resolve_roles(b.manifest, data, eval_split)
    if roles.source == "holdout":
        return roles.tuning, roles.reporting, "holdout"
    tuning, reporting = stratified_halves(roles.tuning)
    return tuning, reporting, "split-half"


def _calibrate(job: _Job, method: str, tmp: Path, chunk_images: int, on_images: Callable[[int], None] | None,
               say: Callable[[str], None]) -> tuple[Path, dict[str, Any] | None]:
    """Step 2: the activation ranges (ORT cache file); with `auto`, per tensor the best of three methods."""
    synth = "synthetic " if job.cset.synthetic else ""
    if method != "auto":
        say(f"calibrating on {len(job.cset)} {synth}images ({method})")
        return compute_ranges(job.model_path, job.cset, job.preprocessing, method, tmp, chunk_images,
                              on_images=on_images), None
    ranges: dict[str, dict[str, tuple[float, float]]] = {}
    for m in per_tensor.CANDIDATES:
        say(f"calibrating on {len(job.cset)} {synth}images ({m})")
        sub = tmp / m
        sub.mkdir()
        ranges[m] = ranges_minmax(compute_ranges(job.model_path, job.cset, job.preprocessing, m, sub, chunk_images,
                                                 on_images=on_images))
    select = job.select_set
    assert select is not None
    say(f"choosing a method per tensor on {len(select)} further training images")
    batches = (select.load(i, min(i + per_tensor.SELECT_BATCH, len(select)), job.preprocessing)
               for i in range(0, len(select), per_tensor.SELECT_BATCH))
    errors = per_tensor.tensor_errors(job.model_path, ranges, batches, tmp)
    choice = per_tensor.choose_per_tensor(errors)
    path = per_tensor.write_merged_ranges(ranges, choice, tmp / "ranges.json")
    return path, {"select_images": len(select), "select_image_list_sha256": select.sha256(),
                  "tensors_per_method": per_tensor.summarize(choice)}


def _builder(job: _Job, ranges_path: Path, method: str, tmp: Path) -> Callable[[list[str] | None, list[str]], Path]:
    """Step 3: a function that writes one rule-checked quantized candidate per (nodes, exclusions)."""
    counter = iter(range(1_000_000))

    def build(nodes_q: list[str] | None, exclude: list[str]) -> Path:
        out = quantize_with_ranges(job.quantize_from, tmp / f"cand{next(counter)}.onnx", ranges_path, method, nodes_q,
                                   exclude)
        violations = check_qdq_rules(out, require_qdq=False)
        if violations:
            raise CalibrationError(
                "the quantized model breaks TensorRT's Q/DQ rules:\n" + format_violations(violations),
                "this is a dsedge bug or an unsupported onnxruntime version; please report it",
            )
        return out

    return build


def eval_inputs(evalset: Any, preprocessing: dict[str, Any], views: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) the budget is judged on: every eval image in its first `views` orientations.

    150 validation images cannot tell one flip from two (0.67 % each); a dermoscopy image has no
    canonical orientation, so its 8 rotations and mirror images are 8 valid inputs of one unseen
    lesion, and agreement over 1,200 of them resolves 0.08 %.
    """
    x = preprocess_files([s.path for s in evalset.samples], preprocessing)
    labels = np.asarray(evalset.labels)
    if views > 1:
        x, labels = dihedral_views(x, views), np.repeat(labels, views)
    return x, labels


#: Which runtime runs the search's candidates: OpenVINO (when installed) runs a Q/DQ file as real
#: INT8 kernels, ~4x faster than ONNX Runtime's CPU Q/DQ path on this project's 2-core CPUs
#: (benchmarks/RESULTS.md); the claims are measured on ONNX Runtime either way.
SEARCH_RUNTIMES = ("auto", "openvino", "onnxruntime")
#: Below this input side 'auto' picks ONNX Runtime: an OpenVINO compilation (~1-2 s per candidate)
#: costs more than it saves on small inputs (the test models run at 32 px).
OPENVINO_MIN_SIDE = 96


def search_runtime(name: str = "auto", image_side: int | None = None) -> str:
    """'openvino' or 'onnxruntime' for a `--search-runtime` value.

    'auto': OpenVINO when it imports and the input is at least `OPENVINO_MIN_SIDE` pixels wide.
    """
    if name not in SEARCH_RUNTIMES:
        raise CalibrationError(f"unknown search runtime '{name}'", f"choose one of: {', '.join(SEARCH_RUNTIMES)}")
    if name != "auto":
        return name
    if image_side is not None and image_side < OPENVINO_MIN_SIDE:
        return "onnxruntime"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "onnxruntime"
    return "openvino"


def _candidate_runner(model_path: Path, runtime: str) -> Any:
    if runtime == "openvino":
        from dsedge.engines.openvino_runner import OpenVinoRunner

        return OpenVinoRunner(model_path, "int8")
    from dsedge.engines.ort_runner import OrtRunner

    return OrtRunner(model_path, providers="CPUExecutionProvider")


def runtime_probs(model_path: Path, x: np.ndarray, runtime: str = "onnxruntime") -> np.ndarray:
    """Probabilities of an ONNX file on 'onnxruntime' or 'openvino' (real INT8 kernels for a Q/DQ file)."""
    with _candidate_runner(model_path, runtime) as runner:
        return runner_probs(runner, x, EVAL_BATCH, pad=runtime == "openvino")


def _probs_until(model_path: Path, x: np.ndarray, ref_top1: np.ndarray, max_flips: int | None,
                 batch: int = EVAL_BATCH, runtime: str = "onnxruntime") -> tuple[np.ndarray, int]:
    """(probabilities, disagreements) on `x`, stopping once more than `max_flips` top-1 answers differ.

    A candidate the search will reject anyway stops after a few chunks instead of all inputs.
    OpenVINO compiles one static shape, so its last chunk is padded (no second compilation).
    """
    out, flips = [], 0
    with _candidate_runner(model_path, runtime) as runner:
        for i in range(0, len(x), batch):
            p = runner_probs(runner, x[i : i + batch], batch, pad=runtime == "openvino")
            out.append(p)
            flips += int((p.argmax(1) != ref_top1[i : i + batch]).sum())
            if max_flips is not None and flips > max_flips:
                break
    return np.concatenate(out), flips


def _search(job: _Job, build: Callable[[list[str] | None, list[str]], Path], eval_split: str, sensitivity: bool | str,
            say: Callable[[str], None], views: int, min_int8_fraction: float | None, search: str = "grow",
            search_min_agreement: float | None = None, runtime: str = "onnxruntime",
            ) -> tuple[Path, list[str], SensitivityReport, dict[str, Any]]:
    """Step 4: compare with FP32 on the tuning images; choose what stays float, else raise.

    `search="grow"` adds INT8 units to the float model where they cost least per MAC
    (`grow_int8_groups`); "greedy" quantizes everything and keeps the most harmful groups float
    (`select_float_groups`). The search never keeps so much float that fewer than
    `min_int8_fraction` of the MACs stay INT8 (None: no floor): a mostly-float model is not an
    INT8 artifact. `search_min_agreement` is a stricter agreement the grow search accepts an
    addition at (a margin for images it never saw); the budget itself is judged as given.
    """
    from dsedge.calibration.macs import int8_mac_fraction
    from dsedge.metrics import classification_metrics
    from dsedge.runtime.decision import top2_margin

    b, evalset, budget = job.bundle, job.evalset, job.budget
    say(f"FP32 reference on {len(evalset)} '{evalset.name}' images" + (f" x {views} orientations" if views > 1 else "")
        + f"; candidates run on {runtime}")
    x_val, labels = eval_inputs(evalset, job.preprocessing, views)
    ref_probs = predict_probs(job.model_path, x_val)
    point = operating_point(b.manifest)
    ref = classification_metrics(labels, ref_probs, b.classes)
    ref_row = {k: ref[k] for k in ("accuracy", "balanced_accuracy", "mean_auc", "mel_auc", "sk_auc")}
    ref_row["mel_recall"] = compare(ref, ref_probs, labels, b.classes, ref_probs, point).get("mel_recall")
    ref_row["operating_point"] = None if point is None else asdict(point)

    # Candidates see the inputs closest to a tie first: those are the ones INT8 flips, so a candidate
    # the search rejects crosses its flip limit in the first chunks instead of near the end.
    order = np.argsort(top2_margin(ref_probs), kind="stable")
    x_ordered, ref_top1 = x_val[order], ref_probs.argmax(1)[order]
    del x_val

    def evaluate(path: Path, max_flips: int | None = None) -> dict[str, Any]:
        fraction = int8_mac_fraction(path)["fraction"]
        ordered, flips = _probs_until(path, x_ordered, ref_top1, max_flips, runtime=runtime)
        if len(ordered) < len(x_ordered):  # certainly misses the agreement term: an upper bound is enough
            return {"stopped_early": True, "evaluated": len(ordered), "top1_agreement": 1.0 - flips / len(order),
                    "int8_mac_fraction": fraction}
        probs = np.empty_like(ordered)
        probs[order] = ordered
        row = compare(ref, probs, labels, b.classes, ref_probs, point, views)
        return {**row, "int8_mac_fraction": fraction}

    if search == "grow" and sensitivity:
        from dataclasses import replace

        from dsedge.calibration.macs import node_macs

        accept = budget if search_min_agreement is None else replace(budget, min_agreement=search_min_agreement)
        chosen, excluded, report = grow_int8_groups(
            block_groups(job.model), job.base_exclude, build, evaluate, ref_row, budget, len(labels),
            node_macs(job.model), on_step=say, min_int8_fraction=min_int8_fraction, accept=accept,
            parts=block_parts(job.model))
        if chosen is None and not report.stopped_at_floor:
            raise CalibrationError("no part of the model can be quantized within the accuracy budget; nothing was "
                                   "written", "loosen a budget term (--min-agreement, ...) or try --method auto")
    else:
        chosen, excluded, report = select_float_groups(
            node_groups(job.model), job.base_exclude, build, evaluate, ref_row, budget, len(labels),
            analyse=sensitivity, on_step=say, min_int8_fraction=min_int8_fraction,
        )
    fraction = report.final.get("int8_mac_fraction")
    if report.met_budget and min_int8_fraction is not None and fraction is not None and fraction < min_int8_fraction:
        report.met_budget = False  # met only through --keep-fp: still mostly float
        report.blocked_by = (f"only {100 * fraction:.1f} % of the MACs are INT8 (floor "
                             f"{100 * min_int8_fraction:.0f} %)")
    if not report.met_budget:
        best = f"best candidate: float {', '.join(report.kept_float) or 'nothing'}, " + (
            f"{100 * fraction:.1f} % of MACs in INT8" if fraction is not None else "INT8 share unknown")
        raise CalibrationError(
            f"INT8 misses the accuracy budget ({', '.join(failed_terms(report.terms)) or 'INT8 MAC floor'}):\n"
            + describe(report.terms)
            + (f"\n{report.blocked_by}" if report.blocked_by else "")
            + _trace_line(report)
            + f"\n{best}; nothing was written",
            "try --method auto, add --keep-fp groups (e.g. depthwise) or calibrate on more images; else "
            "quantization-aware fine-tuning: `dsedge qat CHECKPOINT --data DIR --bundle "
            f"{b.root} --out runs/qat/best`, then `dsedge calibrate {b.root} --weights runs/qat/best.safetensors` "
            "(docs/CALIBRATION.md: it did not keep more decisions of the shipped 224 px model); or loosen a budget term "
            "(--min-agreement, --max-mel-auc-delta, --max-acc-delta, --min-int8-macs); --allow-mostly-float writes "
            "the best candidate anyway" + ("" if sensitivity else ", or --sensitivity"),
        )
    accuracy = {"split": evalset.name, "role": "tuning", "fingerprint": evalset.fingerprint(), "n": len(labels),
                "images": len(evalset), "views": views, "fp32": ref_row, "int8": report.final,
                "budget": budget.to_dict(), "budget_terms": report.terms, "met_budget": True,
                "int8_mac_fraction": fraction, "min_int8_mac_fraction": min_int8_fraction, "search_runtime": runtime}
    return chosen, excluded, report, accuracy


def _trace_line(report: SensitivityReport) -> str:
    """The grow search in one line for the error message ('+' kept, 'x' rejected, tuning agreement %):
    a failed run writes no report file, so what it tried must be in what it prints."""
    if not report.trace:
        alone = [f"{g['group']} {100 * g['top1_agreement']:.2f}" for g in report.groups
                 if g.get("top1_agreement") is not None]
        return f"\n{report.search} search, units measured alone (tuning agreement %): " + ", ".join(alone) if alone else ""
    steps = [f"{'+' if t['kept'] else 'x'}{t['group']}"
             + ("" if t["top1_agreement"] is None else f" {100 * t['top1_agreement']:.2f}") for t in report.trace]
    return "\ngrow search (+ kept, x rejected; tuning agreement %): " + ", ".join(steps)


def _report_claims(job: _Job, chosen: Path, views: int, tuning: dict[str, Any] | None,
                   say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """The agreement claims of the INT8 (and FP16) files, measured on the reporting images.

    Views of one image are correlated, so the interval is over images (`dsedge.stats.clustered_ci`).
    """
    from dsedge.clinical.claims import make_claim
    from dsedge.data.roles import split_record
    from dsedge.stats import clustered_ci

    rep = job.reportset
    if rep is None or len(rep) == 0:
        return {}
    say(f"measuring the claims on {len(rep)} '{rep.name}' images the search never saw")
    x, labels = eval_inputs(rep, job.preprocessing, views)
    ref = predict_probs(job.model_path, x)
    measured_on = split_record(rep, "reporting", f"held out from the INT8 search ({views} orientations per image)")
    point = operating_point(job.bundle.manifest)
    files = {"int8": chosen}
    fp16 = job.bundle.find("onnx", "fp16")
    if fp16:
        files["fp16"] = job.bundle.root / fp16[0]
    claims = {}
    for precision, path in files.items():
        probs = predict_probs(path, x)
        same = (probs.argmax(1) == ref.argmax(1)).reshape(len(rep), views)
        value = float(same.mean())
        ci = clustered_ci(same.sum(1), [views] * len(rep))
        also = _openvino_agreement(path, x, ref) if precision == "int8" else {}
        claims[f"{precision}_top1_agreement"] = make_claim(
            value, ci, "at_least", measured_on, tuning if precision == "int8" else None,
            limit=None if ci is None else ci[0], backend="onnxruntime", artifact=path.name,
            k=int(same.sum()), n=int(same.size), interval="Clopper-Pearson 95 % over images (views clustered)",
            what=f"{precision.upper()} top-1 agreement with FP32",
            mel_referrals_changed=mel_referrals_changed(probs, ref, labels, job.bundle.classes, point, views),
            **also)
    return claims


def _openvino_agreement(path: Path, x: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """{"openvino": {value, k, n}}: the same INT8 file on OpenVINO (CPUs), the same images; {} without it."""
    if search_runtime("auto") != "openvino":
        return {}
    same = int((runtime_probs(path, x, "openvino").argmax(1) == ref.argmax(1)).sum())
    return {"openvino": {"value": same / len(x), "k": same, "n": len(x)}}


def _write(job: _Job, chosen: Path, mixed: onnx.ModelProto | None, ranges_path: Path, method: str,
           record: dict[str, Any], report: SensitivityReport | None, write_cache: bool,
           claims: dict[str, dict[str, Any]] | None = None) -> None:
    """Step 5: stage every file, then swap them in with the manifest in one atomic bundle update."""
    b = job.bundle
    simam = b.artifacts[job.model_path.name].get("simam")
    with bundle_update(b) as up:
        shutil.copyfile(chosen, up.stage(INT8_NAME))
        up.add_artifact(INT8_NAME, "onnx", "int8", simam=simam, source=job.model_path.name, qdq="tensorrt",
                        int8_mac_fraction=round(record["int8_mac_fraction"]["fraction"], 4),
                        **({"weights": job.weights["checkpoint"]} if job.weights else {}))
        _write_mixed(up, mixed, simam, job.model_path.name)
        if write_cache:
            from dsedge.calibration.trt_cache import DEFAULT_TRT_VERSION, write_calibration_table

            write_calibration_table(ranges_minmax(ranges_path), up.stage(CACHE_NAME), method)
            up.add_artifact(CACHE_NAME, "calibration-cache", "int8", for_model=job.model_path.name,
                            trt_version=DEFAULT_TRT_VERSION)
        elif CACHE_NAME in b.artifacts:  # a table from an earlier calibration no longer matches
            up.remove_artifact(CACHE_NAME)
        if report is not None:  # audit files, not artifacts: swapped in with the rest, never listed
            jname, mname = f"{REPORT_STEM}.json", f"{REPORT_STEM}.md"
            atomic_write_json(up.stage(jname), report.to_dict())
            up.stage(mname).write_text(to_markdown(report), encoding="utf-8")
            record["report"] = [jname, mname]
        up.set_key("calibration", record)
        old = {k: v for k, v in (b.manifest.get("claims") or {}).items()
               if not k.endswith("_top1_agreement")}  # agreement claims belong to the previous INT8 file
        up.set_key("claims", {**old, **(claims or {})})


def _write_mixed(up: BundleUpdate, mixed: onnx.ModelProto | None, simam: Any, source: str) -> None:
    if mixed is not None:
        onnx.save(mixed, str(up.stage(MIXED_NAME)))
        up.add_artifact(MIXED_NAME, "onnx", MIXED_PRECISION, simam=simam, source=INT8_NAME, qdq="tensorrt",
                        float_precision="fp16", reductions="fp32")
    elif MIXED_NAME in up.bundle.artifacts:  # it would belong to the previous INT8 model
        up.remove_artifact(MIXED_NAME)


def _mixed_twin(chosen: Path) -> onnx.ModelProto:
    mixed = to_mixed_fp16(onnx.load(str(chosen)))
    violations = check_qdq_rules(mixed)
    if violations:
        raise CalibrationError("the mixed INT8/FP16 model breaks TensorRT's Q/DQ rules:\n"
                               + format_violations(violations))
    return mixed


def calibrate_bundle(
    bundle: str | Path,
    data: str | Path | None,
    *,
    method: str = DEFAULT_METHOD,
    num_images: int = 512,
    seed: int = 0,
    keep_fp: Sequence[str] | str = DEFAULT_KEEP_FP,
    budget: Budget | None = None,
    max_acc_drop: float | None = None,
    min_agreement: float | None = None,
    split: str = "train",
    eval_split: str = "val",
    write_cache: bool = False,
    sensitivity: bool | str = True,
    synthetic: bool = False,
    mixed_fp16: bool = True,
    select_images: int = per_tensor.DEFAULT_SELECT_IMAGES,
    eval_views: int = DIHEDRAL_VIEWS,
    min_int8_fraction: float | None = MIN_INT8_MAC_FRACTION,
    search: str = "grow",
    search_min_agreement: float | None = None,
    search_runtime_name: str = "auto",
    chunk_images: int = rd.DEFAULT_CHUNK_IMAGES,
    on_images: Callable[[int], None] | None = None,
    on_step: Callable[[str], None] | None = None,
    weights: str | Path | None = None,
) -> dict[str, Any]:
    """Write `model.int8.onnx` (TensorRT Q/DQ) into `bundle`, calibrated on `data`'s `split`.

    With data, INT8 is compared with FP32 on `eval_split` and must meet
    `budget` (default `Budget()`: agreement >= 99 %, |delta MEL AUC| <= 0.005,
    |delta ACC| <= 0.5 points, MEL recall not lower at the bundle's operating
    point), judged on every eval image in its first `eval_views` of 8 orientations
    (default all 8; 1 = the images as they are). With `sensitivity` on, `search="grow"`
    (the default) measures each bottleneck block alone in INT8 and adds blocks to the float model
    in order of budget usage per MAC saved, each kept only if the candidate meets the budget (or
    the stricter `search_min_agreement`), its candidates run on `search_runtime_name` (`search_runtime`);
    `search="greedy"` quantizes everything and, only if that
    misses the budget, keeps the most harmful stages float until it holds
    (`sensitivity="always"` measures the groups anyway). A missed budget or a model below the MAC
    floor raises `CalibrationError` and nothing is written. The older keywords
    `max_acc_drop` / `min_agreement` alone mean `Budget.legacy(...)` (only those
    two terms). `method="auto"` chooses entropy/percentile/minmax per tensor on
    `select_images` further training images. With `mixed_fp16`, also writes
    `model.int8-fp16.onnx`. `data=None, synthetic=True` calibrates on seeded
    random images (smoke tests and latency only; no accuracy check). `weights` (a `dsedge qat`
    checkpoint of the bundle's model) is exported like `model.onnx` and quantized instead of it,
    with `model.onnx`'s ranges, and judged against `model.onnx` (`dsedge.calibration.weights`). Returns the
    manifest's `calibration` record plus `output` (the INT8 path) and
    `sensitivity` (the report dict or None).
    """
    say = on_step or (lambda _m: None)
    if budget is None:
        legacy = max_acc_drop is not None or min_agreement is not None
        budget = Budget.legacy(max_acc_drop, min_agreement) if legacy else Budget()
    if max_acc_drop is not None and max_acc_drop < 0:
        raise CalibrationError(f"--max-acc-drop must be >= 0 points, got {max_acc_drop}")
    if search not in SEARCHES:
        raise CalibrationError(f"unknown search '{search}'", f"choose one of: {', '.join(SEARCHES)}")
    if search_min_agreement is not None and not 0.0 <= search_min_agreement <= 1.0:
        raise CalibrationError(f"--search-min-agreement must be a fraction in [0, 1], got {search_min_agreement}")
    search_runtime(search_runtime_name)  # a bad name fails before any work
    job = _resolve(bundle, data, method, num_images, seed, keep_fp, split, eval_split, synthetic, budget,
                   select_images)
    runtime = search_runtime(search_runtime_name, int(job.preprocessing["crop"]))
    qmethod = "minmax" if method == "auto" else method
    with tempfile.TemporaryDirectory(prefix="dsedge-int8-") as tmp_name:
        tmp = Path(tmp_name)
        if weights is not None:
            from dsedge.calibration.weights import weights_source

            job.source_path, job.weights = weights_source(job.bundle, weights, tmp / "weights.onnx", say)
            if sensitivity and search == "grow":
                say("note: the grow search starts from the float model, and QAT weights in float are not the "
                    "bundle's model: expect it to reject most units; --no-sensitivity judges the layout QAT trained")
            qat = job.weights.get("qat") or {}
            if qat and (qat.get("calib_images"), qat.get("method"), qat.get("seed")) != (num_images, method, seed):
                say(f"note: QAT trained with ranges from {qat.get('calib_images')} images ({qat.get('method')}, seed "
                    f"{qat.get('seed')}); these are from {num_images} ({method}, seed {seed})")
        ranges_path, auto_record = _calibrate(job, method, tmp, chunk_images, on_images, say)
        build = _builder(job, ranges_path, qmethod, tmp)
        report, accuracy, claims = None, None, {}
        if job.evalset is not None:
            chosen, excluded, report, accuracy = _search(job, build, eval_split, sensitivity, say, eval_views,
                                                         min_int8_fraction, search, search_min_agreement, runtime)
            tuning = {k: accuracy[k] for k in ("split", "role", "fingerprint", "images")}
            claims = _report_claims(job, chosen, eval_views, tuning, say)
        else:
            say("quantizing")
            chosen, excluded = build(None, job.base_exclude), job.base_exclude
            predict_probs(chosen, job.cset.load(0, 1, job.preprocessing))  # it must at least run
        violations = check_qdq_rules(chosen)
        if violations:
            raise CalibrationError("refusing to write an INT8 model TensorRT would reject:\n"
                                   + format_violations(violations))
        mixed = _mixed_twin(chosen) if mixed_fp16 else None
        record = _record(job, method, seed, split, chunk_images, excluded, report, accuracy, auto_record, mixed)
        record["int8_mac_fraction"] = int8_mac_fraction(chosen)
        record["claims"] = sorted(claims)
        record["weights"] = job.weights  # None: the bundle's own weights
        _write(job, chosen, mixed, ranges_path, qmethod, record, report, write_cache, claims)
    from dsedge.export.model_card import refresh_model_card
    from dsedge.export.vectors import write_vectors

    write_vectors(job.bundle.root)  # golden vectors of the new INT8 files
    refresh_model_card(job.bundle.root)  # the card states the new claims
    say(f"wrote {job.bundle.root / INT8_NAME}")
    return {**record, "output": str(job.bundle.root / INT8_NAME), "claim_values": claims,
            "sensitivity": report.to_dict() if report else None}


def _record(job: _Job, method: str, seed: int, split: str, chunk_images: int, excluded: list[str],
            report: SensitivityReport | None, accuracy: dict[str, Any] | None, auto_record: dict[str, Any] | None,
            mixed: onnx.ModelProto | None) -> dict[str, Any]:
    """The manifest's `calibration` record: everything needed to reproduce and audit the model."""
    cset = job.cset
    return {
        "method": method,
        "calibrator": {m: CALIBRATOR_OPTIONS[m] for m in ((method,) if method != "auto" else per_tensor.CANDIDATES)},
        "per_tensor_methods": auto_record,
        "num_images": len(cset),
        "seed": seed,
        "split": None if cset.synthetic else split,
        "image_list_sha256": cset.sha256(),
        "data_fingerprint": job.data_fingerprint,
        "class_counts": cset.class_counts,
        "synthetic": cset.synthetic,
        "chunk_images": chunk_images,
        "keep_fp": job.tokens,
        "excluded_nodes": sorted(excluded),
        "kept_float_groups": report.kept_float if report else [],
        "quantization": {"format": "QDQ", "activations": "int8 per-tensor symmetric",
                         "weights": "int8 per-channel symmetric", "bias": "float", **EXTRA_OPTIONS},
        "mixed_fp16": MIXED_NAME if mixed is not None else None,
        "budget": job.budget.to_dict(),
        "sensitivity_search_ran": bool(report and report.groups),
        "search": report.search if report and report.groups else None,
        "accuracy": accuracy,
        "versions": _versions(),
    }
