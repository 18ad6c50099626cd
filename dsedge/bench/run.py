"""`run_bench`: every registered backend x precision x batch size on one machine, against PyTorch eager FP32.

Rows come from the backend registry (`dsedge.engines.registry`), built from a
bundle (the ONNX / FP16 / INT8 / TensorRT artifacts) plus the PyTorch model with
the same weights; without a bundle the default job makes one
(`dsedge.bench.sources`). Then, in order, each a visible progress phase:
build every runner, warm every (runner, batch size) up — compilation is timed
and reported apart — time all of them in interleaved, shuffled rounds
(`dsedge.bench.rounds`) while the busy-machine guard watches
(`dsedge.bench.stability`), run the accuracy pass, and write the report.

The reference (PyTorch eager FP32 by default) is always measured: speed-ups are
per-round ratios to it. A backend that is not installed, a precision the
hardware lacks or a batch above an engine profile becomes a *skipped* row with
its reason; unknown backend, precision or option names are errors.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from dsedge.bench.accuracy import EvalSet, accuracy_block, load_eval_set, predict_probs
from dsedge.bench.latency import device_blocks
from dsedge.bench.options import backend_options, split_list
from dsedge.bench.progress import BenchProgress
from dsedge.bench.report import environment, print_table, write_report
from dsedge.bench.rounds import Cell, RoundPlan, run_rounds, warm_up
from dsedge.bench.rows import fastest, timed_row
from dsedge.bench.sources import Source, bundle_source, default_source
from dsedge.bench.stability import GuardLimits, MachineGuard, logical_cpus
from dsedge.engines import registry
from dsedge.engines.base import Runner
from dsedge.errors import DsedgeError
from dsedge.utils.console import make_console

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
REFERENCE = ("torch", "fp32")
#: Top-1 agreement with the FP32 reference an artifact needs to count as a drop-in replacement.
AGREEMENT_TARGET = 0.995
QUICK_COMPILE_REASON = ("torch.compile compiles each shape anew (about a minute each on a 2-core CPU): "
                        "--quick-compile (the default job on CPU) compiles the smallest batch only (use --compile-all)")
DATA_ENV = "DSEDGE_ISIC2017"  # the default job reports accuracy on this data set's val split when set


def _batch_sizes(value: Sequence[int] | str) -> list[int]:
    try:
        sizes = [int(v) for v in (value.split(",") if isinstance(value, str) else value)]
    except ValueError as e:
        raise DsedgeError(f"batch sizes must be integers, got {value!r}") from e
    if not sizes or any(s < 1 for s in sizes):
        raise DsedgeError(f"batch sizes must be >= 1, got {value!r}")
    return sorted(set(sizes))


def _reference(value: str | Sequence[str]) -> tuple[str, str]:
    parts = value.split() if isinstance(value, str) else list(value)
    if len(parts) != 2:
        raise DsedgeError(f"--reference must be 'BACKEND PRECISION', got {value!r}", "e.g. 'torch fp32'")
    spec = registry.get(parts[0])
    if parts[1] not in spec.precisions:
        raise DsedgeError(f"reference backend {spec.name} does not run {parts[1]}",
                          f"it runs: {', '.join(spec.precisions)}")
    return parts[0], parts[1]


def plan_runners(backends: Sequence[str] | str | None, precisions: Sequence[str] | str,
                 reference: tuple[str, str] = REFERENCE) -> list[tuple[str, str]]:
    """(backend, precision) pairs to run, the reference first; validates the names against the registry."""
    bk = split_list(backends if backends is not None else registry.names(), "backend(s)", registry.names())
    pr = split_list(precisions, "precision(s)", PRECISIONS)
    pairs = [(b, p) for b in bk for p in registry.get(b).precisions if p in pr]
    if not pairs:
        raise DsedgeError(
            f"none of the backends {', '.join(bk)} runs precision(s) {', '.join(pr)}",
            "; ".join(f"{b}: {', '.join(registry.get(b).precisions)}" for b in bk),
        )
    return [reference] + [p for p in pairs if p != reference]


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


def _validate(bundle: Path | None, checkpoint: Path | None, threads: int | None, image_size: int,
              data: Path | None) -> None:
    if threads is not None and threads < 1:
        raise DsedgeError(f"--threads must be >= 1, got {threads}")
    if image_size < 32:
        raise DsedgeError(f"--image-size must be >= 32, got {image_size}")
    if data is not None and not Path(data).exists():
        raise DsedgeError(f"data folder not found: {data}")
    if bundle is None and checkpoint is not None:
        raise DsedgeError("--checkpoint needs a BUNDLE exported from it")


def run_bench(
    bundle: Path | None = None,
    *,
    checkpoint: Path | None = None,
    backends: Sequence[str] | str | None = None,
    precisions: Sequence[str] | str = PRECISIONS,
    batch_sizes: Sequence[int] | str = (1, 8, 32),
    reference: str | Sequence[str] = REFERENCE,
    plan: RoundPlan | None = None,
    limits: GuardLimits | None = None,
    options: Sequence[str] | None = None,
    threads: int | None = None,
    device: str = "auto",
    data: Path | None = None,
    split: str = "val",
    out: Path = Path("bench_out"),
    image_size: int = 224,
    accuracy_batch: int = 32,
    compile_all: bool | None = None,
    guard_seconds: float = 1.0,
    console: Console | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark the requested backends x precisions x batch sizes; write the report into `out`.

    `plan` sets rounds / minimum rounds / time cap / iterations (see `RoundPlan`);
    `limits` the stability thresholds; `options` backend options as
    "backend.key=value". `threads` defaults to every CPU this process may use,
    passed to every backend, so all rows run with the same thread count.
    `compile_all=None`: torch.compile only the smallest batch (every precision)
    in the default job on CPU, every batch size otherwise. The default job (`bundle=None`)
    reads `$DSEDGE_ISIC2017` as `data` when no data is given. Returns the result
    dict also written to `out/bench.json`.
    """
    console = console or make_console()
    ref = _reference(reference)
    pairs = plan_runners(backends, precisions, ref)
    sizes = _batch_sizes(batch_sizes)
    dev = _resolve_device(device)
    user_options = backend_options(options or ())
    plan = plan or RoundPlan()
    limits = limits or GuardLimits()
    if bundle is None and data is None and os.environ.get(DATA_ENV):
        data = Path(os.environ[DATA_ENV])
    _validate(bundle, checkpoint, threads, image_size, data)
    threads = threads or logical_cpus()
    if compile_all is None:
        compile_all = not (bundle is None and dev == "cpu")
    started = time.perf_counter()
    guard = MachineGuard(limits)
    with _workdir() as work, BenchProgress(console, enabled=progress) as bar:
        with bar.phase("checking that the machine is idle"):
            guard.measure_before(guard_seconds)
        source = (bundle_source(Path(bundle), Path(checkpoint) if checkpoint else None) if bundle is not None
                  else default_source(work, image_size, bar, data))
        eval_set = _eval_set(data, split, source, bar)
        common = {"threads": threads, "device": dev, "interleaved": True,
                  "checkpoint": str(source.checkpoint) if source.checkpoint else None}
        rows, machine, measured, agree_ref = _measure(
            pairs, sizes, source, eval_set, common, user_options, plan, guard,
            ref, None if compile_all else min(sizes), accuracy_batch, bar)
    result = _result(rows, pairs, sizes, source, eval_set, ref, agree_ref, machine, measured, plan, threads,
                     dev, compile_all, user_options, started)
    result["end_to_end"] = end_to_end_rows(source.bundle.root)
    files = write_report(result, out)
    print_table(result, console)
    console.print(f"[dim]wrote {', '.join(str(p) for p in files.values())} in {result['elapsed_s']} s[/]",
                  highlight=False)
    return result


def _measure(pairs: list[tuple[str, str]], sizes: list[int], source: Source, eval_set: EvalSet | None,
             common: dict[str, Any], user_options: dict[str, dict[str, Any]], plan: RoundPlan,
             guard: MachineGuard, ref: tuple[str, str], quick: int | None, accuracy_batch: int,
             bar: BenchProgress) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], str]:
    """Build, warm up and time every row in interleaved rounds, then the accuracy pass.

    Returns (rows, the guard's verdict, the rounds' summary, the agreement reference's label).
    """
    rng = np.random.default_rng(0)
    inputs = {bs: rng.standard_normal((bs, 3, source.image_size, source.image_size)).astype(np.float32)
              for bs in sizes}
    with ExitStack() as stack:
        runners, rows, build_s = _build(pairs, source, common, user_options, stack, bar)
        cells = _cells(runners, inputs, rows, quick)
        for cell in cells:
            with bar.phase(f"warm-up {cell.key[0]} {cell.key[1]} batch {cell.key[2]}"):
                warm_up(cell, plan)
        with bar.phase(f"timing {len(cells)} rows in interleaved rounds", total=plan.rounds) as advance:
            measured = run_rounds(cells, plan, guard, on_round=lambda done, _n: advance(1))
        machine = guard.verdict()
        rows += _timed_rows(cells, runners, ref, machine, guard.limits, build_s)
        _int8_shares(rows, source.bundle.artifacts)
        agree_ref = f"{ref[0]} {ref[1]}" if source.torch_matches_bundle else "onnxruntime fp32"
        if eval_set is not None:
            _accuracy_pass(runners, rows, source, eval_set, accuracy_batch, agree_ref, bar, quick)
    return rows, machine, measured, agree_ref


def _eval_set(data: Path | None, split: str, source: Source, bar: BenchProgress) -> EvalSet | None:
    if data is None:
        source.notes.append("no --data: latency on synthetic inputs only")
        return None
    with bar.phase(f"loading {split} images of {data}") as advance:
        eval_set = load_eval_set(data, split, source.preprocessing, source.classes, progress=advance)
    if source.random_weights:
        source.notes.append("random weights: ACC and AUC are chance level; agreement with the FP32 reference "
                            "is still meaningful (near-uniform probabilities make near-ties: read it together "
                            "with max abs dp)")
    return eval_set


def _build(pairs: list[tuple[str, str]], source: Source, common: dict[str, Any],
           user_options: dict[str, dict[str, Any]], stack: ExitStack, bar: BenchProgress,
           ) -> tuple[dict[tuple[str, str], Runner], list[dict[str, Any]], dict[tuple[str, str], float]]:
    """Build every runner (each a progress phase, its seconds kept); one that cannot be built gives
    skipped rows."""
    runners: dict[tuple[str, str], Runner] = {}
    skipped: list[dict[str, Any]] = []
    seconds: dict[tuple[str, str], float] = {}
    for backend, precision in pairs:
        spec = registry.get(backend)
        start = time.perf_counter()
        with bar.phase(f"building {backend} {precision}"):
            try:
                runner = spec.from_bundle(source.bundle, precision, **common, **user_options.get(backend, {}))
            except Exception as e:  # noqa: BLE001 - any failure to build a runner is a skipped row
                skipped.append({"backend": backend, "precision": precision, "status": "skipped",
                                "reason": _reason(e), "deployable": spec.runtime})
                continue
        runners[(backend, precision)] = stack.enter_context(runner)
        seconds[(backend, precision)] = time.perf_counter() - start
    return runners, skipped, seconds


def _cells(runners: dict[tuple[str, str], Runner], inputs: dict[int, np.ndarray], rows: list[dict[str, Any]],
           quick_size: int | None) -> list[Cell]:
    """One cell per (runner, batch size); skipped-row markers replace the ones that cannot run.

    `rows` holds runner-level skip markers (no batch size yet) and is rewritten to per-batch rows.
    """
    per_batch = []
    for marker in rows:
        per_batch += [{**marker, "batch_size": bs} for bs in inputs]
    rows[:] = per_batch
    cells = []
    for (backend, precision), runner in runners.items():
        base = {"backend": backend, "precision": precision, "runner": runner.info.to_dict(),
                "deployable": registry.get(backend).runtime, "status": "skipped"}
        for bs, batch in inputs.items():
            if quick_size is not None and backend == "torch-compile" and bs != quick_size:
                rows.append({**base, "batch_size": bs, "reason": QUICK_COMPILE_REASON})
            elif runner.max_batch is not None and bs > runner.max_batch:
                rows.append({**base, "batch_size": bs,
                             "reason": f"batch {bs} is above the engine profile's maximum {runner.max_batch}"})
            else:
                cells.append(Cell((backend, precision, bs), runner, batch))
    return cells


def end_to_end_rows(bundle_dir: Path) -> list[dict[str, Any]]:
    """What a device pays per image beyond the engine: decode / quality / preprocess / infer / post on the
    bundle's golden-vector JPEGs (a 12 MP frame among them), FP32 on ONNX Runtime and INT8 on OpenVINO
    when the bundle has it. Timed after the rounds, not interleaved: a split, not a speed-up."""
    from dsedge.bench.end_to_end import end_to_end
    from dsedge.errors import DsedgeError

    jobs = [("onnxruntime", "fp32")]
    if (bundle_dir / "model.int8.onnx").is_file() and registry.get("openvino").availability()[0]:
        jobs.append(("openvino", "int8"))
    out = []
    for backend, precision in jobs:
        try:
            e2e = end_to_end(bundle_dir, backend=backend, precision=precision, repeats=3)
            out.append({**e2e.to_dict(), "markdown": e2e.to_markdown()})
        except DsedgeError as e:  # e.g. a bundle without golden vectors
            out.append({"backend": backend, "precision": precision, "skipped": e.message})
    return out


def _int8_shares(rows: list[dict[str, Any]], artifacts: dict[str, Any]) -> None:
    """Each row that runs an INT8 file says how much of it is INT8 (`calibration.macs`): a file named
    INT8 with most layers float must not pass for INT8 in a speed table."""
    for r in rows:
        entry = artifacts.get(((r.get("runner") or {}).get("extra") or {}).get("file") or "") or {}
        if entry.get("int8_mac_fraction") is not None:
            r["int8_mac_fraction"] = entry["int8_mac_fraction"]


def _timed_rows(cells: list[Cell], runners: dict[tuple[str, str], Runner], ref: tuple[str, str],
                machine: dict[str, Any], limits: GuardLimits,
                build_s: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
    """Rows of the measured cells: reference rows first, then every other row against them."""
    refs = {c.key[2]: c for c in cells if c.key[:2] == ref}
    ref_rows = {bs: timed_row(c, None, False, machine, limits) for bs, c in refs.items()}
    out = []
    for cell in cells:
        backend, precision, bs = cell.key
        runner = runners[(backend, precision)]
        base = {"backend": backend, "precision": precision, "batch_size": bs, "status": "ok",
                "runner": runner.info.to_dict(), "deployable": registry.get(backend).runtime}
        if cell.key[:2] == ref:
            row = ref_rows[bs]
        else:
            ref_row = ref_rows.get(bs)
            row = timed_row(cell, refs.get(bs), bool(ref_row and ref_row["stability"]["unstable"]), machine,
                            limits)
            if ref_row is None:
                row["speedup"] = row["speedup_ci95"] = None
        row["latency"].update(device_blocks(runner, cell.batch, max(len(cell.times_ms), 10), 3))
        row["latency"]["build_s"] = build_s.get((backend, precision))
        out.append({**base, **row})
    return out


def _accuracy_pass(runners: dict[tuple[str, str], Runner], rows: list[dict[str, Any]], source: Source,
                   eval_set: EvalSet, batch: int, agree_ref: str, bar: BenchProgress,
                   quick_size: int | None = None) -> None:
    """Accuracy of every runner on the eval set (reference first), attached to its ok rows.

    In the quick torch.compile mode the compiled rows run the batch size they were compiled for:
    another shape would cost a second compilation (a minute on a small CPU).
    """
    probs: dict[str, np.ndarray] = {}
    for r in rows:
        if r["status"] == "ok":
            r["accuracy"] = None  # stays None where no claim can be made
    for (backend, precision), runner in runners.items():
        label = f"{backend} {precision}"
        if backend.startswith("torch") and not source.torch_matches_bundle:
            continue  # its weights are not the bundle's: no accuracy claim for them
        if not any(r["status"] == "ok" for r in rows if (r["backend"], r["precision"]) == (backend, precision)):
            continue
        size = quick_size if quick_size is not None and backend == "torch-compile" else batch
        with bar.phase(f"accuracy pass {label}", total=len(eval_set.labels)) as advance:
            probs[label] = predict_probs(runner, eval_set.images, size, progress=advance)
        acc = accuracy_block(probs[label], eval_set, probs.get(agree_ref))
        for r in rows:
            if (r["backend"], r["precision"]) == (backend, precision) and r["status"] == "ok":
                r["accuracy"] = acc


def _result(rows: list[dict[str, Any]], pairs: list[tuple[str, str]], sizes: list[int], source: Source,
            eval_set: EvalSet | None, ref: tuple[str, str], agree_ref: str, machine: dict[str, Any],
            measured: dict[str, Any], plan: RoundPlan, threads: int, dev: str, compile_all: bool,
            user_options: dict[str, dict[str, Any]], started: float) -> dict[str, Any]:
    ref_label = f"{ref[0]} {ref[1]}"
    order = {p: i for i, p in enumerate(pairs)}
    rows.sort(key=lambda r: (order.get((r["backend"], r["precision"]), 99), r["batch_size"]))
    timing = (f"{measured['rounds']} interleaved rounds (shuffled order; stopped by {measured['stopped_by']}, "
              f"{measured['seconds']} s), each row about {plan.round_ms:g} ms per round"
              + (f" ({plan.iters} iterations)" if plan.iters else "")
              + f" after {max(1, plan.warmup)} warm-up call(s) (reported apart); in every round each row starts "
              f"after a {plan.gap_ms:g} ms idle gap and {plan.settle} untimed call(s), garbage collector off; "
              "host wall clock around infer + "
              f"synchronize; speed-up = median over rounds of ({ref_label} round median / row round median), "
              "bootstrap 95% interval")
    result: dict[str, Any] = {
        "format": "dsedge-bench",
        "version": 2,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(threads),
        "source": {"description": source.description, "bundle": str(source.bundle.root),
                   "model": source.bundle.model_name,
                   "checkpoint": str(source.checkpoint) if source.checkpoint else None,
                   "random_weights": source.random_weights, "synthetic_inputs": True, "notes": source.notes},
        "settings": {"backends": sorted({b for b, _ in pairs}), "precisions": sorted({p for _, p in pairs}),
                     "batch_sizes": sizes, "rounds": plan.to_dict(), "threads": threads, "device": dev,
                     "compile_all": compile_all, "image_size": source.image_size, "options": user_options,
                     "timing": timing},
        "measurement": measured,
        "stability": machine,
        "reference": ref_label,
        "agreement_reference": agree_ref if eval_set is not None else None,
        "data": eval_set.describe() if eval_set is not None else None,
        "rows": rows,
        "fastest": fastest(rows),
        "fastest_agreeing": fastest(rows, AGREEMENT_TARGET),
        "agreement_target": AGREEMENT_TARGET,
    }
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    return result
