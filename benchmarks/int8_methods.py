"""INT8 methods side by side (issue 11): agreement with FP32, accuracy deltas and interleaved CPU latency.

Usage (the lead's tables, on the shipped model, idle machine)::

    # 112 px (the shipped model's training size): accuracy + latency (~10 min on 2 idle cores)
    python benchmarks/int8_methods.py --checkpoint isic2017 --data $DSEDGE_ISIC2017 \
        --methods ptq,ptq-keep-fp,ptq-budget,nncf --work /tmp/int8m-112 \
        --json benchmarks/results/int8_methods_112.json --md benchmarks/results/int8_methods_112.md

    # 224 px: a model fine-tuned at 224 (configs/fixres224.toml; the 112 px weights run at
    # 224 px as they are are out of distribution, logits ~1000, see `--image-size`)
    python benchmarks/int8_methods.py --checkpoint runs/fixres224/best \
        --data $DSEDGE_ISIC2017 --methods ptq,ptq-budget,nncf --work /tmp/int8m-224 \
        --json benchmarks/results/int8_methods_224.json --md benchmarks/results/int8_methods_224.md

    # an existing bundle (and the checkpoint it was exported from, for the PyTorch row; checked)
    python benchmarks/int8_methods.py --bundle bundles/reference --checkpoint isic2017 --data ... \
        [--qat-checkpoint runs/reference-qat/best.safetensors] [--methods ...] [--latency-only]

Methods (each an INT8 model made from the same FP32 bundle and the same calibration images):

* `ptq`: `dsedge calibrate`'s default ranges (percentile 99.99) and Q/DQ placement, every conv INT8
  but the head (`--keep-fp head`; the grow search never quantizes it);
* `ptq-auto`: `--method auto` (entropy / percentile / minmax per tensor);
* `ptq-keep-fp`: default ranges with `--keep-fp` groups in float (default: the depthwise convs);
* `ptq-budget`: `dsedge calibrate` as a user runs it: the default decision budget (judged on
  the 8 orientations of every eval image) and its sensitivity search;
* `qat`: the QAT fine-tuned checkpoint (`dsedge qat --bundle`) quantized by `dsedge calibrate
  --weights` (the FP32 bundle's ranges, depthwise convs float as QAT trained them); its
  agreement is against the *original* FP32 model;
* `qat-budget`: the same checkpoint through `dsedge calibrate`'s budget and grow search;
* `nncf`: what an OpenVINO user does instead, NNCF's default `nncf.quantize` of the FP32
  model on the same calibration images.

Accuracy on the eval split (default `val`; skipped with `--latency-only`): every INT8
model runs on OpenVINO's CPU plugin (the Q/DQ files also on ONNX Runtime, the TensorRT
proxy) against FP32 ONNX Runtime: top-1 agreement, delta ACC (points), delta MEL / SK /
mean AUC; and (`--views 8`, the default) agreement over every eval image's 8 orientations
with a 95 % interval that resamples images, plus how confident FP32 was on the flipped inputs.

Latency: batch 1 at the bundle's input size, with the bench's own machinery
(`dsedge.bench.rounds`, `dsedge.bench.stability`, `dsedge.bench.rows.timed_row`): rows
PyTorch eager FP32 (the reference), OpenVINO FP32 and OpenVINO INT8 of every method are
warmed up, then timed in shuffled interleaved rounds in one process while the busy-machine
guard watches. Per row: p50, IQR / p50, the speed-up over PyTorch eager as the median over
rounds of (eager round median / row round median) with its bootstrap 95 % interval, the
same against NNCF's INT8 row (our methods and NNCF's side by side in the same rounds), and
the stability verdict. Latency on a loaded machine means nothing: run this when the machine
is idle; rows measured on a busy machine are marked unstable.

Targets (issue 11), judged in the report's last section: OpenVINO INT8 p50 >= 5x PyTorch
eager FP32 (median per-round speed-up of a stable row), and agreement at least NNCF-default's
at no worse latency (the interval of the speed-up over NNCF not entirely below 1).

Input size: without `--bundle`, `--checkpoint` (a path or the shipped name `isic2017`) is
exported here at `--image-size` (default: its training size). `dsedge export` refuses a size
other than the training crop, so for another size the same weights are re-saved first with
the standard preprocessing for that size (`PreprocessConfig.for_size`); the report says so.
Such a model's accuracy is not the trained model's (it never saw that scale), and for the
shipped 112 px model at 224 px its FP32 activations are ~100x the trained ones: latency is
still meaningful, INT8 agreement is not (fine-tune at the size instead: configs/fixres224.toml).

`--work DIR` keeps the exported bundle, the INT8 models and NNCF's IR in DIR and reuses
them on the next run when their recipe (checkpoint, size, images, seed, method options)
is the same: a latency rerun then costs only the timed rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.runtime.decision import DEFAULT_UNCERTAIN_MARGIN, top2_margin

#: A flip where FP32's own top-2 margin was at least this (uncalibrated softmax) changed a decision the
#: bundle would not call `uncertain` (dsedge.runtime.decision: calibrated margin < 0.15; the shipped
#: model's temperature < 1 only widens margins, so this count is conservative).
CONFIDENT_MARGIN = DEFAULT_UNCERTAIN_MARGIN
QDQ_METHODS = ("ptq", "ptq-auto", "ptq-keep-fp", "ptq-budget", "qat", "qat-budget")
ALL_METHODS = (*QDQ_METHODS, "nncf")
REFERENCE = "torch eager fp32"
SPEEDUP_TARGET = 5.0
STAMP = "int8_methods_stamp.json"


# --------------------------------------------------------------------------- artifacts


def _stamp_ok(folder: Path, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """The note stored with a reusable artifact when its recipe matches `recipe`, else None."""
    try:
        saved = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return saved.get("note", {}) if saved.get("recipe") == recipe else None


def _write_stamp(folder: Path, recipe: dict[str, Any], note: dict[str, Any]) -> None:
    (folder / STAMP).write_text(json.dumps({"recipe": recipe, "note": note}, indent=2, default=str) + "\n")


def _sha(path: Path) -> str:
    from dsedge.utils.io import sha256_file

    return sha256_file(path)


def resized_checkpoint(checkpoint: str | Path, size: int, out: Path) -> Path:
    """The same weights re-saved with the standard preprocessing for `size` px (`dsedge export` keeps
    a checkpoint at its training crop); the metadata records where they came from."""
    from dsedge.config import PreprocessConfig
    from dsedge.models.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(checkpoint)
    weights, _ = checkpoint_paths(checkpoint)
    drop = {"format", "dsedge_version", "torch_version", "weights_file", "weights_sha256"}
    new = {k: v for k, v in meta.items() if k not in drop}
    new.update(input_size=size, preprocessing=PreprocessConfig.for_size(size).to_dict(),
               resized_from={"checkpoint": str(checkpoint), "weights_sha256": _sha(weights),
                             "input_size": meta.get("input_size")})
    return save_checkpoint(out, model, new)


def prepare_bundle(args: argparse.Namespace, work: Path) -> tuple[Path, Path | None, list[str]]:
    """(FP32 bundle, checkpoint for the PyTorch row or None, notes): `--bundle` as given, else
    `--checkpoint` exported here at `--image-size` (reused from `--work` when the recipe matches)."""
    from dsedge.models.checkpoint import checkpoint_paths, read_checkpoint_meta

    notes: list[str] = []
    if args.bundle:
        ckpt = Path(checkpoint_paths(args.checkpoint)[0]) if args.checkpoint else None
        if ckpt is not None:
            from dsedge.bench.sources import check_checkpoint

            check_checkpoint(ckpt, _manifest(Path(args.bundle)).get("model", {}).get("checkpoint_sha256"))
        else:
            notes.append("no --checkpoint: the PyTorch eager row runs random weights (same architecture; "
                         "latency only)")
        return Path(args.bundle), ckpt, notes
    from dsedge.export.bundle import export_bundle

    weights, _ = checkpoint_paths(args.checkpoint)
    trained = read_checkpoint_meta(args.checkpoint).get("input_size")
    size = args.image_size or trained
    recipe = {"checkpoint_sha256": _sha(weights), "image_size": size}
    folder = work / "fp32"
    if folder.is_dir() and _stamp_ok(folder, recipe) is not None:
        print(f"== reusing the exported bundle {folder / 'bundle'}", flush=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        ckpt: Path = weights
        if trained is not None and size != trained:
            ckpt = resized_checkpoint(args.checkpoint, size, folder / "checkpoint")
        print(f"== exporting {args.checkpoint} at {size} px", flush=True)
        export_bundle(ckpt, folder / "bundle", parity_images=4)
        _write_stamp(folder, recipe, {"checkpoint": str(ckpt)})
    if trained is not None and size != trained:
        notes.append(f"the {trained} px-trained weights run at {size} px (re-saved with the standard {size} px "
                     f"preprocessing): accuracy is not the trained model's; latency and INT8-vs-FP32 "
                     f"agreement are the point")
    ckpt_used = folder / "checkpoint.safetensors" if (folder / "checkpoint.safetensors").is_file() else weights
    return folder / "bundle", ckpt_used, notes


def _checkpoint_sha(checkpoint: str | Path) -> str:
    from dsedge.models.checkpoint import checkpoint_paths

    return _sha(checkpoint_paths(checkpoint)[0])


def _manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "dsedge.json").read_text())


def _keep_fp(method: str, args: argparse.Namespace) -> str | tuple[str, ...]:
    """ptq / ptq-auto: every conv INT8 but the head (calibrate's search never quantizes it); ptq-keep-fp:
    `--keep-fp`; the budget rows: calibrate's default; qat: what `dsedge qat` fine-tuned in INT8 (depthwise
    convs and head float)."""
    from dsedge.config import DEFAULT_KEEP_FP

    if method == "ptq-keep-fp":
        return args.keep_fp
    if method.endswith("-budget"):
        return DEFAULT_KEEP_FP
    if method == "qat":
        from dsedge.calibration.qat import QatConfig

        return QatConfig().keep_float
    return "head"


def make_qdq(method: str, args: argparse.Namespace, src_bundle: Path,
             work: Path) -> tuple[Path | None, dict[str, Any]]:
    """The INT8 Q/DQ file of one method (None + an error note when it cannot be made)."""
    from dsedge.calibration.budget import Budget
    from dsedge.calibration.int8 import CALIBRATOR_OPTIONS, DEFAULT_METHOD, calibrate_bundle
    from dsedge.errors import DsedgeError

    if method.startswith("qat") and not args.qat_checkpoint:
        return None, {"error": "no --qat-checkpoint given"}
    recipe = {"method": method, "fp32": _sha(src_bundle / "model.onnx"), "num_images": args.num_images,
              "seed": args.seed, "keep_fp": _keep_fp(method, args),
              "qdq_placement": "weighted ops, float residual path",
              "qat": _checkpoint_sha(args.qat_checkpoint) if method.startswith("qat") else None,
              "data": str(args.data),
              "ranges": [DEFAULT_METHOD, CALIBRATOR_OPTIONS.get(DEFAULT_METHOD)]}
    folder = work / method
    note = _stamp_ok(folder, recipe)
    if note is not None and (folder / "model.int8.onnx").is_file():
        print(f"  [{method}] reusing {folder / 'model.int8.onnx'}", flush=True)
        return folder / "model.int8.onnx", {**note, "reused": True}
    shutil.rmtree(folder, ignore_errors=True)
    bundle = Path(shutil.copytree(src_bundle, folder))
    kw: dict[str, Any] = {"num_images": args.num_images, "seed": args.seed, "mixed_fp16": False,
                          "budget": Budget.off(), "sensitivity": False, "keep_fp": _keep_fp(method, args)}
    if method.startswith("qat"):  # `dsedge calibrate --weights`: the QAT weights, the FP32 bundle's ranges
        kw["weights"] = Path(args.qat_checkpoint)
    if method == "ptq-auto":
        kw["method"] = "auto"
    elif method in ("ptq-budget", "qat-budget"):
        kw.update(budget=Budget(), sensitivity=True)
    t0 = time.perf_counter()
    try:
        rec = calibrate_bundle(bundle, args.data, **kw, on_step=lambda m: print(
            f"  [{method} {time.perf_counter() - t0:6.1f} s] {m}", flush=True))
    except DsedgeError as e:
        return None, {"error": e.message}
    note = {"calibrate_seconds": round(time.perf_counter() - t0, 1), "kept_float_groups": rec["kept_float_groups"],
            "excluded_nodes": len(rec["excluded_nodes"]), "per_tensor_methods": rec.get("per_tensor_methods")}
    _write_stamp(folder, recipe, note)
    return bundle / "model.int8.onnx", note


def existing_int8(path: Path) -> tuple[Path, dict[str, Any]]:
    """An INT8 Q/DQ file made elsewhere (`--int8 LABEL=PATH`, e.g. a bundle's `dsedge calibrate` output): its
    bundle's calibration record summarised when it sits in one; it is measured exactly like the others."""
    note: dict[str, Any] = {"file": str(path)}
    manifest = path.parent / "dsedge.json"
    if manifest.is_file():
        cal = _manifest(path.parent).get("calibration") or {}
        note.update({k: cal.get(k) for k in ("method", "search", "kept_float_groups") if k in cal})
        note["int8_mac_fraction"] = (cal.get("int8_mac_fraction") or {}).get("fraction")
    return path, note


def make_nncf(args: argparse.Namespace, src_bundle: Path, images: np.ndarray,
              work: Path) -> tuple[Path, dict[str, Any]]:
    """NNCF's default post-training quantization of the FP32 model (OpenVINO IR), same calibration images."""
    import nncf
    import openvino as ov

    from dsedge.engines.openvino_runner import inline_onnx

    recipe = {"method": "nncf", "fp32": _sha(src_bundle / "model.onnx"), "num_images": len(images),
              "images_sha256": _array_sha(images), "nncf": nncf.__version__}
    folder = work / "nncf"
    out = folder / "model.nncf.xml"
    note = _stamp_ok(folder, recipe)
    if note is not None and out.is_file():
        print(f"  [nncf] reusing {out}", flush=True)
        return out, {**note, "reused": True}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    inline_onnx(src_bundle / "model.onnx", folder / "fp32.inline.onnx")
    model = ov.Core().read_model(str(folder / "fp32.inline.onnx"))
    t0 = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset([images[i : i + 1] for i in range(len(images))]),
                              subset_size=len(images))
    ov.save_model(quantized, str(out))
    (folder / "fp32.inline.onnx").unlink()
    note = {"calibrate_seconds": round(time.perf_counter() - t0, 1), "nncf": nncf.__version__}
    _write_stamp(folder, recipe, note)
    return out, note


def _array_sha(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def ov_runner(path: Path, threads: int | None) -> Any:
    from dsedge.engines.openvino_runner import OpenVinoRunner

    if path.suffix == ".xml":  # NNCF's IR: nothing to inline
        return OpenVinoRunner(path, "int8", threads=threads, inline=False)
    return OpenVinoRunner(path, "int8", threads=threads)


# --------------------------------------------------------------------------- accuracy


def probs_of(runner: Any, x: np.ndarray, batch: int = 1) -> np.ndarray:
    """Softmax of every image, unpadded chunks of `batch` (static-shape OpenVINO models compile once per shape)."""
    from dsedge.engines.base import predict_probs

    return predict_probs(runner, x, batch, pad=False)


def deltas(ref: dict[str, Any], ref_probs: np.ndarray, probs: np.ndarray, labels: np.ndarray,
           classes: list[str]) -> dict[str, Any]:
    from dsedge.calibration.sensitivity import compare

    row = compare(ref, probs, labels, classes, ref_probs)
    return {"top1_agreement": row["top1_agreement"], "delta_acc_points": -row["acc_drop_points"],
            "delta_mel_auc": row["mel_auc_delta"], "delta_sk_auc": row["sk_auc_delta"],
            "delta_mean_auc": row["mean_auc_delta"], "max_abs_prob_diff": row["max_abs_prob_diff"]}


def view_agreement(ref_probs: np.ndarray, probs: np.ndarray, views: int) -> dict[str, Any]:
    """Agreement over every view of every eval image, with a 95 % interval that resamples images."""
    from dsedge.comparator import agreement_interval

    groups = np.repeat(np.arange(len(ref_probs) // views), views)
    point, lo, hi = agreement_interval(ref_probs, probs, groups)
    flipped = ref_probs.argmax(1) != probs.argmax(1)
    margins = top2_margin(ref_probs)[flipped]
    return {"views": views, "inputs": len(ref_probs), "top1_agreement": point, "ci95": [lo, hi],
            "flips": int(flipped.sum()), "images_with_a_flip": int(len(np.unique(groups[flipped]))),
            "max_flip_margin": float(margins.max()) if len(margins) else None,
            "confident_flips": int((margins >= CONFIDENT_MARGIN).sum())}


def load_data(args: argparse.Namespace, bundle: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(calibration images for NNCF — the very list `dsedge calibrate` uses, eval images, eval labels);
    no eval images with `--latency-only`."""
    from dsedge.calibration import reader as rd
    from dsedge.data import load_split
    from dsedge.runtime.preprocess import preprocess_files

    cset = rd.select_images(load_split(args.data, "train", classes=bundle.classes), args.num_images, args.seed)
    calib = cset.load(0, len(cset), bundle.preprocessing)
    if args.latency_only:
        return calib, None, None
    ev = load_split(args.data, args.eval_split, classes=bundle.classes)
    samples = ev.samples[: args.eval_limit] if args.eval_limit else ev.samples
    x = preprocess_files([s.path for s in samples], bundle.preprocessing)
    return calib, x, np.asarray([s.label for s in samples])


# --------------------------------------------------------------------------- latency


def round_plan(args: argparse.Namespace) -> Any:
    from dsedge.bench.rounds import RoundPlan

    return RoundPlan(rounds=args.rounds, min_rounds=min(args.min_rounds, args.rounds), time_cap_s=args.time_cap,
                     round_ms=args.round_ms, warmup=args.warmup, seed=args.seed)


def _cell_key(label: str) -> tuple[str, str, int]:
    backend, _, precision = label.partition(" ")
    return backend, precision, 1


def interleaved_latency(runners: dict[str, Any], x1: np.ndarray, plan: Any, limits: Any = None,
                        guard_seconds: float = 1.0, on_round: Any = None) -> dict[str, Any]:
    """Batch-1 latency of every runner with the bench's machinery; `runners[REFERENCE]` is the reference.

    Returns {"rows": {label: timed_row(...) + "vs_nncf"}, "machine": the guard's verdict,
    "measurement": run_rounds' record, "plan": the plan}.
    """
    from dsedge.bench.rounds import Cell, run_rounds, warm_up
    from dsedge.bench.rows import timed_row
    from dsedge.bench.stability import GuardLimits, MachineGuard, speedup_summary

    limits = limits or GuardLimits()
    guard = MachineGuard(limits)
    guard.measure_before(guard_seconds)
    cells = {label: Cell(_cell_key(label), r, x1) for label, r in runners.items()}
    for label, cell in cells.items():
        print(f"  warm-up {label}", flush=True)
        warm_up(cell, plan)
    measured = run_rounds(list(cells.values()), plan, guard, on_round=on_round)
    machine = guard.verdict()
    ref = cells[REFERENCE]
    rows = {REFERENCE: timed_row(ref, None, False, machine, limits)}
    ref_unstable = rows[REFERENCE]["stability"]["unstable"]
    nncf = cells.get("openvino int8 nncf")
    for label, cell in cells.items():
        if label == REFERENCE:
            continue
        rows[label] = timed_row(cell, ref, ref_unstable, machine, limits)
        if nncf is not None and label.startswith("openvino int8 ") and cell is not nncf:
            # > 1: this row is faster than NNCF's INT8 in the same rounds
            rows[label]["vs_nncf"] = speedup_summary(nncf.round_medians, cell.round_medians, limits)
    return {"rows": rows, "machine": machine, "measurement": measured, "plan": plan.to_dict(),
            "limits": limits.to_dict()}


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dsedge.bench.report import environment
    from dsedge.bench.stability import logical_cpus
    from dsedge.doctor import cpu_info
    from dsedge.engines.openvino_runner import OpenVinoRunner
    from dsedge.engines.ort_runner import OrtRunner
    from dsedge.engines.torch_runner import TorchRunner
    from dsedge.metrics import classification_metrics
    from dsedge.runtime.bundle import load_bundle

    threads = args.threads or logical_cpus()
    keep = args.work is not None
    work = Path(args.work) if keep else Path(tempfile.mkdtemp(prefix="dsedge-int8-methods-"))
    work.mkdir(parents=True, exist_ok=True)
    runners: dict[str, Any] = {}
    try:
        bundle_path, ckpt, notes = prepare_bundle(args, work)
        bundle = load_bundle(bundle_path)
        size = int(bundle.manifest["input"]["shape"][-1])
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        calib, x, labels = load_data(args, bundle)
        out: dict[str, Any] = {
            "machine": cpu_info(), "environment": environment(threads), "bundle": str(bundle_path),
            "checkpoint": str(ckpt) if ckpt else None, "notes": notes, "eval_split": args.eval_split,
            "eval_images": 0 if x is None else len(x), "calibration_images": len(calib), "threads": threads,
            "image_size": size, "latency_only": bool(args.latency_only), "methods": {}}
        ref = ref_probs = xv = ref_v = None
        if x is not None:
            with OrtRunner(bundle.require("onnx", "fp32"), "fp32") as fp32:
                ref_probs = probs_of(fp32, x, 16)
                if args.views > 1:
                    from dsedge.runtime.preprocess import dihedral_views

                    xv = dihedral_views(x, args.views)
                    ref_v = probs_of(fp32, xv, 16)
                    out["eval_views"] = args.views
            ref = classification_metrics(labels, ref_probs, bundle.classes)
            out["fp32"] = {k: ref[k] for k in ("accuracy", "mel_auc", "sk_auc", "mean_auc")}
        given = dict(item.split("=", 1) for item in args.int8)
        for method in [*methods, *given]:
            print(f"== {method}", flush=True)
            if method in given:
                path, note = existing_int8(Path(given[method]))
            elif method == "nncf":
                path, note = make_nncf(args, bundle_path, calib, work)
            else:
                path, note = make_qdq(method, args, bundle_path, work)
            row: dict[str, Any] = {**note}
            if path is not None:
                label = f"openvino int8 {method}"
                runners[label] = ov_runner(path, threads)
                if x is not None:
                    row["openvino"] = deltas(ref, ref_probs, probs_of(runners[label], x), labels, bundle.classes)
                    if xv is not None:
                        row["openvino"]["views"] = view_agreement(ref_v, probs_of(runners[label], xv), args.views)
                    if path.suffix == ".onnx":
                        with OrtRunner(path, "int8") as q:
                            row["onnxruntime"] = deltas(ref, ref_probs, probs_of(q, x, 16), labels, bundle.classes)
                            if xv is not None:
                                row["onnxruntime"]["views"] = view_agreement(ref_v, probs_of(q, xv, 16), args.views)
            out["methods"][method] = row
        if not args.skip_latency:
            print("== latency", flush=True)
            runners["openvino fp32"] = OpenVinoRunner.from_bundle(bundle, "fp32", threads=threads)
            if ckpt is not None:
                runners[REFERENCE] = TorchRunner(checkpoint=ckpt, threads=threads, device="cpu")
            else:
                runners[REFERENCE] = TorchRunner.from_bundle(bundle, "fp32", device="cpu", threads=threads)
            plan = round_plan(args)
            out["latency"] = interleaved_latency(
                runners, calib[:1], plan, guard_seconds=args.guard_seconds,
                on_round=lambda done, n: print(f"  round {done}/{n}", flush=True))
        out["targets"] = targets(out)
    finally:
        for r in runners.values():
            r.close()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- verdicts and report


def _nncf_speed_verdict(vs: dict[str, Any] | None) -> str | None:
    """"faster" / "slower" when the 95 % interval of (NNCF time / row time) excludes 1, else "same"."""
    if vs is None or not vs.get("ci95"):
        return None
    lo, hi = vs["ci95"]
    return "faster" if lo > 1.0 else "slower" if hi < 1.0 else "same"


def targets(res: dict[str, Any]) -> dict[str, Any]:
    """Issue 11's targets per INT8 method: >= 5x eager (stable row, median per-round speed-up) and
    agreement >= NNCF's at no worse latency."""
    rows = (res.get("latency") or {}).get("rows", {})
    nncf_agree = ((res["methods"].get("nncf") or {}).get("openvino") or {}).get("top1_agreement")
    out: dict[str, Any] = {}
    for method, mrow in res["methods"].items():
        lat = rows.get(f"openvino int8 {method}")
        t: dict[str, Any] = {}
        if lat is not None:
            unstable = lat["stability"]["unstable"]
            s = lat["speedup"]
            t["speedup_vs_eager"] = s
            t["speedup_ci95"] = lat["speedup_ci95"]
            t["5x_eager"] = "unstable" if unstable else ("met" if s is not None and s >= SPEEDUP_TARGET
                                                         else "not met")
        agree = (mrow.get("openvino") or {}).get("top1_agreement")
        if method != "nncf":
            speed = _nncf_speed_verdict((lat or {}).get("vs_nncf"))
            t["latency_vs_nncf"] = speed
            if agree is None or nncf_agree is None or speed is None:
                t["agreement_vs_nncf"] = "not measured"
            elif lat["stability"]["unstable"]:
                t["agreement_vs_nncf"] = "unstable"
            else:
                t["agreement_vs_nncf"] = "met" if agree >= nncf_agree and speed != "slower" else "not met"
        out[method] = t
    return out


def _f(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _ratio(s: float | None, ci: list[float] | None) -> str:
    if s is None:
        return "–"
    return f"{s:.2f}x" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "")


def _stability(lat: dict[str, Any]) -> str:
    """"stable", or "UNSTABLE: " and the row's own reasons (the machine's are said once, above the table)."""
    st = lat["stability"]
    if not st["unstable"]:
        return "stable"
    reasons = [r for r in st["reasons"] if not r.startswith("machine busy")]
    if len(reasons) < len(st["reasons"]):
        reasons.insert(0, "machine busy")
    return "UNSTABLE: " + "; ".join(reasons)


def _views_cell(d: dict[str, Any] | None) -> str:
    v = (d or {}).get("views")
    if v is None:
        return "–"
    lo, hi = v["ci95"]
    margin = "" if v.get("max_flip_margin") is None else (
        f"; largest FP32 margin flipped {v['max_flip_margin']:.3f}, {v['confident_flips']} at >= {CONFIDENT_MARGIN:g}")
    return (f"{100 * v['top1_agreement']:.2f} [{100 * lo:.2f}-{100 * hi:.2f}] "
            f"({v['flips']} of {v['inputs']}; {v['images_with_a_flip']} images{margin})")


def _accuracy_cells(d: dict[str, Any] | None) -> str:
    if d is None:
        return "– | – | – | – | – | –"
    return (f"{100 * d['top1_agreement']:.2f} | {_views_cell(d)} | {d['delta_acc_points'] + 0.0:+.2f} | {_f(d['delta_mel_auc'], '+.4f')} "
            f"| {_f(d['delta_sk_auc'], '+.4f')} | {_f(d['delta_mean_auc'], '+.4f')}")


def _latency_cells(lat: dict[str, Any] | None) -> str:
    if lat is None:
        return "– | – | – | – | –"
    host = lat["latency"]["host"]
    vs = lat.get("vs_nncf")
    return (f"{host['p50_ms']:.2f} | {100 * host['spread']:.1f}% | {_ratio(lat['speedup'], lat['speedup_ci95'])} "
            f"| {_ratio(vs['median'], vs['ci95']) if vs else '–'} | {_stability(lat)}")


def to_markdown(res: dict[str, Any]) -> str:
    """The comparison table for benchmarks/RESULTS.md."""
    lat = res.get("latency") or {}
    rows = lat.get("rows", {})
    env = res.get("environment") or {}
    head = (f"Machine: {res['machine'].get('model')}; {res['image_size']} px, batch 1, threads {res['threads']}; "
            f"{res['calibration_images']} calibration images; ")
    head += ("accuracy not measured (--latency-only)." if res.get("latency_only") else
             f"{res['eval_images']} '{res['eval_split']}' images, agreement and deltas against FP32 ONNX Runtime.")
    lines = [head]
    if env.get("versions"):
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(env["versions"].items())) + ".")
    for note in res.get("notes", []):
        lines.append(f"Note: {note}.")
    if lat:
        m, plan, machine = lat["measurement"], lat["plan"], lat["machine"]
        lines.append(f"Latency: {m['rounds']} interleaved rounds in shuffled order (stopped by {m['stopped_by']}, "
                     f"{m['seconds']} s), each row about {plan['round_ms']:g} ms per round after "
                     f"{max(1, plan['warmup'])} warm-up call(s)"
                     + (f", each turn after a {plan['gap_ms']:g} ms idle gap and {plan.get('settle', 0)} untimed "
                        "call(s)" if plan.get("gap_ms") is not None else "")
                     + "; speed-up = median over rounds of "
                     "(PyTorch eager round median / row round median), bootstrap 95 % interval; "
                     "x NNCF > 1: faster than NNCF's INT8 in the same rounds. Machine: "
                     + ("BUSY (" + "; ".join(machine["reasons"]) + ")" if machine["busy"] else "idle") + ".")
    if res.get("eval_views"):
        lines.append(f"Views: each eval image also in its {res['eval_views']} orientations (rotations and mirror "
                     "images: a dermoscopy image has no canonical orientation); agreement over all of them with a "
                     "95 % bootstrap interval that resamples images (an image's views move together).")
    lines += ["", "| method | runs on | agreement % | agreement over views % [95% CI] | delta ACC (pts) | delta MEL AUC | delta SK AUC | delta mean AUC "
              "| p50 ms | IQR/p50 | x torch eager [95% CI] | x NNCF INT8 [95% CI] | stability |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label, name in ((REFERENCE, "PyTorch eager (reference)"), ("openvino fp32", "OpenVINO")):
        if label in rows:
            lines.append(f"| FP32 | {name} | – | – | – | – | – | – | {_latency_cells(rows[label])} |")
    for method, row in res["methods"].items():
        if "error" in row:
            lines.append(f"| {method} | – | {row['error']} | | | | | | | | | | |")
            continue
        lines.append(f"| {method} | OpenVINO INT8 | {_accuracy_cells(row.get('openvino'))} "
                     f"| {_latency_cells(rows.get(f'openvino int8 {method}'))} |")
        if row.get("onnxruntime") is not None:
            lines.append(f"| {method} (same file) | ONNX Runtime | {_accuracy_cells(row['onnxruntime'])} "
                         "| – | – | – | – | – |")
    tg = res.get("targets") or {}
    if tg and lat:
        lines += ["", f"Targets (issue 11): OpenVINO INT8 >= {SPEEDUP_TARGET:g}x PyTorch eager FP32; agreement at "
                  "least NNCF-default's at no worse latency (interval of x NNCF not entirely below 1).", ""]
        for method, t in tg.items():
            parts = [f">= {SPEEDUP_TARGET:g}x eager: {t.get('5x_eager', '–')} "
                     f"({_ratio(t.get('speedup_vs_eager'), t.get('speedup_ci95'))})"]
            if method != "nncf":
                parts.append(f"agreement >= NNCF at no worse latency: {t['agreement_vs_nncf']}"
                             + (f" (latency vs NNCF: {t['latency_vs_nncf']})" if t.get("latency_vs_nncf") else ""))
            lines.append(f"- {method}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", help="bundle exported from the trained model (dsedge export); else --checkpoint "
                                    "is exported here")
    p.add_argument("--checkpoint", help="the model's checkpoint (a path or the shipped name isic2017): the "
                                        "PyTorch eager row, and the export when no --bundle is given")
    p.add_argument("--image-size", type=int, help="export --checkpoint at this size (no --bundle; default: "
                                                  "its training size)")
    p.add_argument("--qat-checkpoint", help="QAT fine-tuned checkpoint (dsedge qat) for the qat rows")
    p.add_argument("--int8", action="append", default=[], metavar="LABEL=PATH",
                   help="also measure this existing INT8 Q/DQ file as row LABEL (e.g. calibrate=B/model.int8.onnx); "
                        "repeatable")
    p.add_argument("--data", default=os.environ.get("DSEDGE_ISIC2017"), help="ISIC 2017 folder (train + val)")
    p.add_argument("--methods", default=",".join(ALL_METHODS))
    p.add_argument("--num-images", type=int, default=512, help="calibration images (every method)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-fp", default="depthwise")
    p.add_argument("--eval-split", default="val")
    p.add_argument("--views", type=int, default=8, help="also measure agreement on each eval image's first N of 8 "
                                                       "orientations (1: off)")
    p.add_argument("--eval-limit", type=int, default=0, help="only the first N eval images (smoke runs)")
    p.add_argument("--latency-only", action="store_true", help="no accuracy pass (INT8 models are still made)")
    p.add_argument("--skip-latency", action="store_true", help="no latency rounds (accuracy only)")
    p.add_argument("--work", help="keep exported / calibrated models here and reuse them when their recipe "
                                  "matches (default: a temporary folder)")
    g = p.add_argument_group("latency (dsedge.bench.rounds.RoundPlan)")
    g.add_argument("--rounds", type=int, default=40)
    g.add_argument("--min-rounds", type=int, default=10, help="rounds done before --time-cap may stop them")
    g.add_argument("--time-cap", type=float, default=600.0, help="seconds of timed rounds at most")
    g.add_argument("--round-ms", type=float, default=200.0, help="wall-clock per row per round")
    g.add_argument("--warmup", type=int, default=3)
    g.add_argument("--guard-seconds", type=float, default=1.0, help="idle check before the rounds")
    g.add_argument("--threads", type=int, default=None, help="every row (default: all CPUs this process may use)")
    p.add_argument("--json")
    p.add_argument("--md")
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data (or DSEDGE_ISIC2017) is required")
    if not args.bundle and not args.checkpoint:
        p.error("give --bundle, or --checkpoint (e.g. isic2017) to export here")
    if args.bundle and args.image_size:
        p.error("--image-size exports --checkpoint; a --bundle has its own size (leave one out)")
    if args.latency_only and args.skip_latency:
        p.error("--latency-only and --skip-latency leave nothing to do")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ALL_METHODS]
    bad = [i for i in args.int8 if "=" not in i or not Path(i.split("=", 1)[1]).is_file()]
    if bad:
        p.error(f"--int8 takes LABEL=PATH of an existing file: {', '.join(bad)}")
    if unknown or not methods:
        p.error(f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ALL_METHODS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    md = to_markdown(res)
    print(md)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
