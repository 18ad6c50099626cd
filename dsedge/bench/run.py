"""`run_bench`: every backend x precision x batch size on one machine, against PyTorch eager FP32.

Rows are built from a bundle (the ONNX / FP16 / INT8 / TensorRT artifacts)
plus the PyTorch model with the same weights (`checkpoint`). Without a bundle
the embedded default job makes one: a seeded random-init DS-ResNet50 saved as a
checkpoint, exported with `dsedge.export`, INT8-calibrated on synthetic images
with `dsedge.calibration` — so the PyTorch rows and the artifacts share
weights, and the report says the weights are random and the data synthetic.

PyTorch eager FP32 is always measured first: it is the speed-up reference
(1.0 by definition) and, when its weights are the bundle's, the agreement
reference. A backend that is not installed, a precision the hardware lacks or
a batch above an engine profile becomes a *skipped* row with its reason;
unknown backend or precision names are errors.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from dsedge.bench.accuracy import EvalSet, accuracy_block, load_eval_set, predict_probs
from dsedge.bench.latency import measure_latency
from dsedge.bench.report import environment, print_table, write_report
from dsedge.engines.base import Runner
from dsedge.errors import DsedgeError, EngineError, MissingDependencyError

#: Backends and the precisions each can run (`--backends`, `--precisions` pick subsets).
BACKENDS: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "fp16", "bf16"),
    "torch-compile": ("fp32", "fp16", "bf16"),
    "onnxruntime": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "bf16"),
    "tensorrt": ("fp16", "int8"),
}
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
REFERENCE = ("torch", "fp32")
ARTIFACT_BACKENDS = ("onnxruntime", "openvino", "tensorrt")
QUICK_COMPILE_REASON = ("torch.compile compiles each shape and precision anew (about a minute each on a "
                        "2-core CPU): the default job compiles FP32 at the smallest batch only (use --compile-all)")


@dataclass
class Source:
    """Where the weights and artifacts come from, and what the report must say about them."""

    bundle: Any  # dsedge.runtime.bundle.Bundle
    checkpoint: Path | None
    description: str
    image_size: int
    preprocessing: dict[str, Any]
    classes: list[str]
    random_weights: bool
    torch_matches_bundle: bool
    notes: list[str] = field(default_factory=list)


def _split_list(value: Sequence[str] | str, what: str, allowed: Sequence[str]) -> list[str]:
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if not items:
        raise DsedgeError(f"no {what} given", f"choose from: {', '.join(allowed)}")
    bad = [v for v in items if v not in allowed]
    if bad:
        raise DsedgeError(f"unknown {what}: {', '.join(bad)}", f"choose from: {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _batch_sizes(value: Sequence[int] | str) -> list[int]:
    try:
        sizes = [int(v) for v in (value.split(",") if isinstance(value, str) else value)]
    except ValueError as e:
        raise DsedgeError(f"batch sizes must be integers, got {value!r}") from e
    if not sizes or any(s < 1 for s in sizes):
        raise DsedgeError(f"batch sizes must be >= 1, got {value!r}")
    return sorted(set(sizes))


def plan_runners(backends: Sequence[str] | str, precisions: Sequence[str] | str) -> list[tuple[str, str]]:
    """(backend, precision) pairs to run, reference first; validates the names."""
    bk = _split_list(backends, "backend(s)", list(BACKENDS))
    pr = _split_list(precisions, "precision(s)", PRECISIONS)
    pairs = [(b, p) for b in bk for p in BACKENDS[b] if p in pr]
    if not pairs:
        raise DsedgeError(
            f"none of the backends {', '.join(bk)} runs precision(s) {', '.join(pr)}",
            "; ".join(f"{b}: {', '.join(BACKENDS[b])}" for b in bk),
        )
    return [REFERENCE] + [p for p in pairs if p != REFERENCE]


# -- sources -----------------------------------------------------------------------------------


def _bundle_source(bundle_path: Path, checkpoint: Path | None) -> Source:
    from dsedge.runtime.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    size = int(bundle.manifest["input"]["shape"][-1])
    model = bundle.manifest.get("model", {})
    random_init = bool(model.get("random_init"))
    notes = []
    if checkpoint is not None:
        _check_checkpoint(checkpoint, model.get("checkpoint_sha256"))
    if checkpoint is None:
        notes.append("no --checkpoint: PyTorch rows use random weights (latency only; agreement is "
                     "measured against ONNX Runtime FP32)")
    desc = f"bundle {bundle.root}" + (f" + checkpoint {checkpoint}" if checkpoint else "")
    if random_init:
        desc += " (random-init weights)"
    return Source(bundle, checkpoint, desc, size, bundle.preprocessing, bundle.classes,
                  random_weights=random_init or checkpoint is None,
                  torch_matches_bundle=checkpoint is not None, notes=notes)


def _check_checkpoint(checkpoint: Path, expected_sha: str | None) -> None:
    """The PyTorch rows must use the weights the bundle was exported from, or agreement means nothing."""
    from dsedge.train.checkpoint import checkpoint_paths
    from dsedge.utils.io import sha256_file

    weights, _ = checkpoint_paths(checkpoint)
    if not weights.is_file():
        raise DsedgeError(f"checkpoint not found: {weights}")
    if expected_sha and sha256_file(weights) != expected_sha:
        raise DsedgeError(
            f"{weights} is not the checkpoint this bundle was exported from (sha256 differs from the manifest)",
            "pass the checkpoint given to `dsedge export`, or leave --checkpoint out",
        )


def _default_source(workdir: Path, image_size: int, console: Console, seed: int = 0) -> Source:
    """The embedded default: random-init DS-ResNet50 -> checkpoint -> bundle -> synthetic INT8."""
    import torch

    from dsedge.config import PreprocessConfig
    from dsedge.models.zoo import create_model
    from dsedge.train.checkpoint import save_checkpoint

    pre = PreprocessConfig.for_size(image_size).to_dict()
    classes = ["MEL", "NV", "SK"]
    torch.manual_seed(seed)
    model = create_model("ds_resnet50", len(classes))
    ckpt = save_checkpoint(workdir / "random_init", model, {
        "model": "ds_resnet50", "classes": classes, "preprocessing": pre, "simam_lambda": 1e-4,
        "random_init": True, "seed": seed,
    })
    desc = (f"random-init DS-ResNet50 (seed {seed}), {image_size}x{image_size} synthetic inputs; "
            "INT8 calibrated on synthetic images")
    from dsedge.calibration.int8 import calibrate_bundle
    from dsedge.export import export_bundle
    from dsedge.runtime.bundle import load_bundle

    notes: list[str] = []
    console.print("[dim]exporting a random-init DS-ResNet50 bundle…[/]")
    t0 = time.perf_counter()
    bpath = export_bundle(ckpt, workdir / "bundle", image_size=image_size, parity_images=4)
    notes.append(f"export took {time.perf_counter() - t0:.1f} s")
    console.print("[dim]calibrating INT8 on 16 synthetic images…[/]")
    t0 = time.perf_counter()
    calibrate_bundle(bpath, None, synthetic=True, num_images=16, sensitivity=False)
    notes.append(f"synthetic INT8 calibration took {time.perf_counter() - t0:.1f} s")
    bundle = load_bundle(bpath)
    return Source(bundle, ckpt, desc, image_size, pre, classes, random_weights=True,
                  torch_matches_bundle=True, notes=notes)


# -- runners -----------------------------------------------------------------------------------


def _onnx_path(source: Source, precision: str) -> Path:
    return source.bundle.require("onnx", precision)


def make_runner(
    backend: str, precision: str, source: Source, *, device: str, threads: int | None
) -> Runner:
    """One runner for (backend, precision); raises `DsedgeError` with the reason it cannot run here."""
    if backend in ("torch", "torch-compile"):
        try:
            from dsedge.engines.torch_runner import TorchRunner
        except ImportError as e:  # pragma: no cover - torch is a core dependency
            raise MissingDependencyError("torch", purpose="PyTorch rows") from e
        return TorchRunner(checkpoint=source.checkpoint, precision=precision, compile=backend == "torch-compile",
                           device=device, threads=threads)
    if backend == "onnxruntime":
        from dsedge.engines.ort_runner import OrtRunner

        providers = "CPUExecutionProvider" if device == "cpu" else "auto"
        return OrtRunner(_onnx_path(source, precision), precision, providers=providers, threads=threads)
    if backend == "openvino":
        if device.startswith("cuda"):
            raise EngineError("OpenVINO is the CPU backend; this run benches CUDA (use --device cpu)")
        from dsedge.engines.openvino_runner import OpenVinoRunner

        inline = source.bundle.find("onnx-inline", "fp32")
        if inline:
            return OpenVinoRunner(source.bundle.path(inline[0]), precision, threads=threads, inline=False)
        return OpenVinoRunner(_onnx_path(source, "fp32"), precision, threads=threads)
    if backend == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError as e:
            raise MissingDependencyError("tensorrt", "tensorrt", "TensorRT engines") from e
        if device == "cpu":
            raise EngineError("TensorRT needs a CUDA GPU and --device cpu was given")
        from dsedge.engines.trt_runner import TrtRunner

        return TrtRunner.from_bundle(source.bundle, precision, cuda_graph=True, split=False)
    raise EngineError(f"unknown backend {backend!r}")  # pragma: no cover - validated earlier


def _reason(e: BaseException) -> str:
    if isinstance(e, DsedgeError):
        return e.message + (f" ({e.hint})" if e.hint else "")
    return f"{type(e).__name__}: {e}"


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dsedge-bench-") as d:
        yield Path(d)


def _resolve_device(device: str) -> str:
    if device == "auto":
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:  # pragma: no cover
            return "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise DsedgeError(f"unknown device '{device}'", "use auto, cpu, cuda or cuda:N")
    return device


#: Top-1 agreement with the FP32 reference an artifact needs to count as a drop-in replacement.
AGREEMENT_TARGET = 0.995


def _fastest(rows: list[dict[str, Any]], min_agreement: float | None = None) -> dict[str, Any]:
    """Per batch size: the fastest dsedge artifact row (ONNX Runtime, OpenVINO, TensorRT).

    With `min_agreement`, only rows whose measured top-1 agreement with the FP32
    reference reaches it count (rows without accuracy data are left out).
    """
    best: dict[str, Any] = {}
    for r in rows:
        if r["status"] != "ok" or r["backend"] not in ARTIFACT_BACKENDS or r.get("speedup") is None:
            continue
        agree = ((r.get("accuracy") or {}).get("agreement") or {}).get("top1_agreement")
        if min_agreement is not None and (agree is None or agree < min_agreement):
            continue
        key = str(r["batch_size"])
        p50 = r["latency"]["host"]["p50_ms"]
        if key not in best or p50 < best[key]["p50_ms"]:
            best[key] = {"label": f"{r['backend']} {r['precision']}", "p50_ms": p50, "speedup": r["speedup"],
                         "top1_agreement": agree}
    return best


def run_bench(
    bundle: Path | None = None,
    *,
    checkpoint: Path | None = None,
    backends: Sequence[str] | str = tuple(BACKENDS),
    precisions: Sequence[str] | str = PRECISIONS,
    batch_sizes: Sequence[int] | str = (1, 8, 32),
    warmup: int = 1,
    iters: int | None = None,
    duration: float | None = 1.0,
    threads: int | None = None,
    device: str = "auto",
    data: Path | None = None,
    split: str = "val",
    out: Path = Path("bench_out"),
    image_size: int = 224,
    accuracy_batch: int = 32,
    compile_all: bool | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Benchmark every requested backend x precision x batch size; write the report into `out`.

    `compile_all=False` runs torch.compile only in FP32 at the smallest batch size
    (each shape costs about a minute of compilation on a 2-core CPU); the others
    become skipped rows saying so. `None` means False for the default job on CPU
    (it must finish in minutes) and True otherwise. Speed-ups compare p50
    latencies (robust to a busy machine). Returns the result dict that is also
    written to `out/bench.json`.
    """
    console = console or Console()
    pairs = plan_runners(backends, precisions)
    sizes = _batch_sizes(batch_sizes)
    dev = _resolve_device(device)
    if threads is not None and threads < 1:
        raise DsedgeError(f"--threads must be >= 1, got {threads}")
    if image_size < 32:
        raise DsedgeError(f"--image-size must be >= 32, got {image_size}")
    if data is not None and not Path(data).exists():
        raise DsedgeError(f"data folder not found: {data}")
    if bundle is None and checkpoint is not None:
        raise DsedgeError("--checkpoint needs a BUNDLE exported from it")
    if compile_all is None:
        compile_all = not (bundle is None and dev == "cpu")
    started = time.perf_counter()
    with _workdir() as work:
        source = (_bundle_source(Path(bundle), Path(checkpoint) if checkpoint else None) if bundle is not None
                  else _default_source(work, image_size, console))
        eval_set: EvalSet | None = None
        if data is not None:
            console.print(f"[dim]loading {data} ({split})…[/]")
            eval_set = load_eval_set(data, split, source.preprocessing, source.classes)
            if source.random_weights:
                source.notes.append("random weights: ACC and AUC are chance level; agreement with the FP32 "
                                    "reference is still meaningful (near-uniform probabilities make near-ties: "
                                    "read it together with max |dp|)")
        else:
            source.notes.append("no --data: latency on synthetic inputs only")
        rng = np.random.default_rng(0)
        inputs = {bs: rng.standard_normal((bs, 3, source.image_size, source.image_size)).astype(np.float32)
                  for bs in sizes}
        rows: list[dict[str, Any]] = []
        probs: dict[tuple[str, str], np.ndarray] = {}
        agree_ref = "torch fp32" if source.torch_matches_bundle else "onnxruntime fp32"
        for backend, precision in pairs:
            rows += _bench_runner(backend, precision, source, inputs, eval_set, probs, console,
                                  device=dev, threads=threads, warmup=warmup, iters=iters, duration=duration,
                                  accuracy_batch=accuracy_batch, agree_ref=agree_ref,
                                  only_sizes=None if compile_all or backend != "torch-compile"
                                  else ([min(sizes)] if precision == "fp32" else []))
    ref_p50 = {r["batch_size"]: r["latency"]["host"]["p50_ms"] for r in rows
                if r["status"] == "ok" and (r["backend"], r["precision"]) == REFERENCE}
    for r in rows:
        if r["status"] == "ok" and r["batch_size"] in ref_p50:
            is_ref = (r["backend"], r["precision"]) == REFERENCE
            r["speedup"] = 1.0 if is_ref else ref_p50[r["batch_size"]] / r["latency"]["host"]["p50_ms"]
    timing = (f"{'fixed ' + str(iters) + ' iterations' if iters else f'{duration} s per row (>= 3 iterations)'}"
              f" after {warmup} warm-up call(s); host wall clock around infer + synchronize; "
              "speed-up = PyTorch eager FP32 p50 / row p50 at the same batch size")
    result: dict[str, Any] = {
        "format": "dsedge-bench",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(threads),
        "source": {"description": source.description, "bundle": str(source.bundle.root),
                   "checkpoint": str(checkpoint) if checkpoint else None, "random_weights": source.random_weights,
                   "synthetic_inputs": True, "notes": source.notes},
        "settings": {"backends": sorted({b for b, _ in pairs}), "precisions": sorted({p for _, p in pairs}),
                     "batch_sizes": sizes, "warmup": warmup, "iters": iters, "duration_s": duration,
                     "threads": threads, "device": dev, "compile_all": compile_all, "image_size": source.image_size, "timing": timing},
        "reference": "torch fp32",
        "agreement_reference": agree_ref if eval_set is not None else None,
        "data": eval_set.describe() if eval_set is not None else None,
        "rows": rows,
    }
    result["fastest"] = _fastest(rows)
    result["fastest_agreeing"] = _fastest(rows, AGREEMENT_TARGET)
    result["agreement_target"] = AGREEMENT_TARGET
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    files = write_report(result, out)
    print_table(result, console)
    console.print(f"[dim]wrote {', '.join(str(p) for p in files.values())} in {result['elapsed_s']} s[/]",
                  highlight=False)
    return result


def _bench_runner(
    backend: str, precision: str, source: Source, inputs: dict[int, np.ndarray], eval_set: EvalSet | None,
    probs: dict[tuple[str, str], np.ndarray], console: Console, *, device: str, threads: int | None,
    warmup: int, iters: int | None, duration: float | None, accuracy_batch: int, agree_ref: str,
    only_sizes: list[int] | None = None,
) -> list[dict[str, Any]]:
    """All batch-size rows of one (backend, precision); skipped rows carry the reason.

    `only_sizes`: measure just these batch sizes (the quick torch.compile mode); the rest are skipped.
    """
    base = {"backend": backend, "precision": precision}
    if only_sizes is not None and not only_sizes:
        return [{**base, "batch_size": bs, "status": "skipped", "reason": QUICK_COMPILE_REASON} for bs in inputs]
    try:
        runner = make_runner(backend, precision, source, device=device, threads=threads)
    except Exception as e:  # noqa: BLE001 - any failure to build a runner is a skipped row, not a crash
        reason = _reason(e)
        console.print(f"[yellow]skip[/] {backend} {precision}: {escape(reason)}", highlight=False)
        return [{**base, "batch_size": bs, "status": "skipped", "reason": reason} for bs in inputs]
    rows = []
    with runner:
        info = runner.info.to_dict()
        for bs, batch in inputs.items():
            row = {**base, "batch_size": bs, "runner": info}
            if only_sizes is not None and bs not in only_sizes:
                rows.append({**row, "status": "skipped", "reason": QUICK_COMPILE_REASON})
                continue
            if runner.max_batch is not None and bs > runner.max_batch:
                rows.append({**row, "status": "skipped",
                             "reason": f"batch {bs} is above the engine profile's maximum {runner.max_batch}"})
                continue
            try:
                lat = measure_latency(runner, batch, warmup=warmup, iters=iters, duration=duration)
            except Exception as e:  # noqa: BLE001 - a backend failing at run time skips the row
                rows.append({**row, "status": "skipped", "reason": f"failed at run time: {_reason(e)}"})
                continue
            h = lat["host"]
            console.print(f"  {backend:<13} {precision:<5} batch {bs:>3}: mean {h['mean_ms']:8.2f} ms  "
                          f"p50 {h['p50_ms']:8.2f}  ({h['iters']} iters)", highlight=False)
            rows.append({**row, "status": "ok", "latency": lat})
        if eval_set is not None and any(r["status"] == "ok" for r in rows):
            acc = _accuracy(runner, backend, precision, source, eval_set, probs, accuracy_batch, agree_ref)
            for r in rows:
                if r["status"] == "ok":
                    r["accuracy"] = acc
    return rows


def _accuracy(
    runner: Runner, backend: str, precision: str, source: Source, eval_set: EvalSet,
    probs: dict[tuple[str, str], np.ndarray], batch: int, agree_ref: str,
) -> dict[str, Any] | None:
    """Accuracy block of one runner; None for PyTorch rows whose weights are not the bundle's."""
    if backend.startswith("torch") and not source.torch_matches_bundle:
        return None
    p = predict_probs(runner, eval_set.images, batch)
    probs[(backend, precision)] = p
    ref_key = tuple(agree_ref.split())
    ref = probs.get(ref_key)  # type: ignore[arg-type]
    return accuracy_block(p, eval_set, ref)
