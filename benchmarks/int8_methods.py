"""INT8 methods side by side (issue 11): agreement with FP32, accuracy deltas and interleaved CPU latency.

Usage (the lead's final table, on the trained reference model, idle machine)::

    python benchmarks/int8_methods.py --bundle bundle/ --checkpoint runs/reference/best.safetensors \
        --data $DSEDGE_ISIC2017 [--qat-checkpoint runs/reference-qat/best.safetensors] \
        [--methods ptq,ptq-auto,ptq-keep-fp,ptq-budget,qat,nncf] [--num-images 512] [--keep-fp depthwise] \
        [--runs 100] [--threads N] --json benchmarks/results/int8_methods.json --md benchmarks/results/int8_methods.md

Methods (each an INT8 model made from the same FP32 bundle and the same calibration images):

* `ptq`: `dsedge calibrate` default (entropy, every group INT8), TensorRT Q/DQ form;
* `ptq-auto`: `--method auto` (entropy / percentile / minmax per tensor);
* `ptq-keep-fp`: entropy with `--keep-fp` groups in float (default: the depthwise convs);
* `ptq-budget`: entropy with the default decision budget and its sensitivity search;
* `qat`: the QAT fine-tuned checkpoint (`dsedge.calibration.qat`), exported and calibrated
  like `ptq`; its agreement is against the *original* FP32 model;
* `nncf`: what an OpenVINO user does instead, NNCF's default `nncf.quantize` of the FP32
  model on the same calibration images.

Accuracy on the eval split (default `val`): every INT8 model runs on OpenVINO's CPU
plugin (the Q/DQ files also on ONNX Runtime, the TensorRT proxy) against FP32 ONNX
Runtime: top-1 agreement, delta ACC (points), delta MEL / SK / mean AUC.

Latency: batch 1 at the bundle's input size, OpenVINO INT8 of each method vs
OpenVINO FP32 vs PyTorch eager FP32, in interleaved rounds in one process (every
runner sees the same machine load). Latency on a loaded machine means nothing:
run this when the machine is idle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

QDQ_METHODS = ("ptq", "ptq-auto", "ptq-keep-fp", "ptq-budget", "qat")
ALL_METHODS = (*QDQ_METHODS, "nncf")


def make_qdq(method: str, args: argparse.Namespace, work: Path) -> tuple[Path | None, dict[str, Any]]:
    """The INT8 Q/DQ file of one method (None + an error note when it cannot be made)."""
    from dsedge.calibration.budget import Budget
    from dsedge.calibration.int8 import calibrate_bundle
    from dsedge.errors import DsedgeError

    src = Path(args.bundle)
    if method == "qat":
        if not args.qat_checkpoint:
            return None, {"error": "no --qat-checkpoint given"}
        from dsedge.export.bundle import export_bundle

        src = export_bundle(Path(args.qat_checkpoint), work / "qat-src", parity_images=4)
    bundle = Path(shutil.copytree(src, work / method))
    kw: dict[str, Any] = {"num_images": args.num_images, "seed": args.seed, "mixed_fp16": False,
                          "budget": Budget.off(), "sensitivity": False}
    if method == "ptq-auto":
        kw["method"] = "auto"
    elif method == "ptq-keep-fp":
        kw["keep_fp"] = args.keep_fp
    elif method == "ptq-budget":
        kw.update(budget=Budget(), sensitivity=True)
    t0 = time.perf_counter()
    try:
        rec = calibrate_bundle(bundle, args.data, on_step=lambda m: print(f"  [{method}] {m}", flush=True), **kw)
    except DsedgeError as e:
        return None, {"error": e.message}
    note = {"calibrate_seconds": round(time.perf_counter() - t0, 1), "kept_float_groups": rec["kept_float_groups"],
            "excluded_nodes": len(rec["excluded_nodes"]), "per_tensor_methods": rec.get("per_tensor_methods")}
    return bundle / "model.int8.onnx", note


def make_nncf(args: argparse.Namespace, images: np.ndarray, work: Path) -> tuple[Path, dict[str, Any]]:
    """NNCF's default post-training quantization of the FP32 model (OpenVINO IR), same calibration images."""
    import nncf
    import openvino as ov

    from dsedge.engines.openvino_runner import inline_onnx

    inline_onnx(Path(args.bundle) / "model.onnx", work / "fp32.inline.onnx")
    model = ov.Core().read_model(str(work / "fp32.inline.onnx"))
    t0 = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset([images[i : i + 1] for i in range(len(images))]),
                              subset_size=len(images))
    out = work / "nncf" / "model.nncf.xml"
    out.parent.mkdir()
    ov.save_model(quantized, str(out))
    return out, {"calibrate_seconds": round(time.perf_counter() - t0, 1), "nncf": nncf.__version__}


def ov_runner(path: Path, threads: int | None) -> Any:
    from dsedge.engines.openvino_runner import OpenVinoRunner

    if path.suffix == ".xml":  # NNCF's IR: nothing to inline
        return OpenVinoRunner(path, "int8", threads=threads, inline=False)
    return OpenVinoRunner(path, "int8", threads=threads)


def probs_of(runner: Any, x: np.ndarray, batch: int = 1) -> np.ndarray:
    """Softmax over batch-1 runs (static-shape OpenVINO models compile once per shape)."""
    from dsedge.engines.base import softmax

    return softmax(np.concatenate([runner.infer(x[i : i + batch]) for i in range(0, len(x), batch)]))


def deltas(ref: dict[str, Any], ref_probs: np.ndarray, probs: np.ndarray, labels: np.ndarray,
           classes: list[str]) -> dict[str, Any]:
    from dsedge.calibration.sensitivity import compare

    row = compare(ref, probs, labels, classes, ref_probs)
    return {"top1_agreement": row["top1_agreement"], "delta_acc_points": -row["acc_drop_points"],
            "delta_mel_auc": row["mel_auc_delta"], "delta_sk_auc": row["sk_auc_delta"],
            "delta_mean_auc": row["mean_auc_delta"], "max_abs_prob_diff": row["max_abs_prob_diff"]}


def interleaved_latency(runners: dict[str, Any], x1: np.ndarray, runs: int, warmup: int,
                        per_round: int = 5) -> dict[str, dict[str, float]]:
    """Batch-1 latency of every runner, alternating rounds of `per_round` calls so all see the same load."""
    for r in runners.values():
        for _ in range(warmup):
            r.infer(x1)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(max(1, runs // per_round)):
        for name, r in runners.items():
            for _ in range(per_round):
                t = time.perf_counter()
                r.infer(x1)
                times[name].append((time.perf_counter() - t) * 1000)
    return {k: {"p50_ms": float(np.percentile(v, 50)), "p90_ms": float(np.percentile(v, 90)),
                "mean_ms": float(np.mean(v)), "n": len(v)} for k, v in times.items()}


def load_data(args: argparse.Namespace, bundle: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibration images for NNCF — the very list `dsedge calibrate` uses, eval images, eval labels)."""
    from dsedge.calibration import reader as rd
    from dsedge.data import load_split
    from dsedge.runtime.preprocess import preprocess_files

    cset = rd.select_images(load_split(args.data, "train", classes=bundle.classes), args.num_images, args.seed)
    calib = cset.load(0, len(cset), bundle.preprocessing)
    ev = load_split(args.data, args.eval_split, classes=bundle.classes)
    samples = ev.samples[: args.eval_limit] if args.eval_limit else ev.samples
    x = preprocess_files([s.path for s in samples], bundle.preprocessing)
    return calib, x, np.asarray([s.label for s in samples])


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dsedge.doctor import cpu_info
    from dsedge.engines.ort_runner import OrtRunner
    from dsedge.engines.torch_runner import TorchRunner
    from dsedge.runtime.bundle import load_bundle
    from dsedge.metrics import classification_metrics

    bundle = load_bundle(args.bundle)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    calib, x, labels = load_data(args, bundle)
    with OrtRunner(bundle.require("onnx", "fp32"), "fp32") as fp32:
        ref_probs = probs_of(fp32, x, 16)
    ref = classification_metrics(labels, ref_probs, bundle.classes)
    out: dict[str, Any] = {"machine": cpu_info(), "bundle": str(args.bundle), "eval_split": args.eval_split,
                           "eval_images": len(x), "calibration_images": len(calib), "threads": args.threads,
                           "image_size": int(x.shape[-1]), "fp32": {k: ref[k] for k in ("accuracy", "mel_auc",
                                                                                         "sk_auc", "mean_auc")},
                           "methods": {}}
    work = Path(tempfile.mkdtemp(prefix="dsedge-int8-methods-"))
    runners: dict[str, Any] = {}
    try:
        for method in methods:
            print(f"== {method}", flush=True)
            if method == "nncf":
                path, note = make_nncf(args, calib, work)
            else:
                path, note = make_qdq(method, args, work)
            row: dict[str, Any] = {**note}
            if path is not None:
                runners[f"openvino int8 {method}"] = ov_runner(path, args.threads)
                row["openvino"] = deltas(ref, ref_probs, probs_of(runners[f"openvino int8 {method}"], x),
                                         labels, bundle.classes)
                if path.suffix == ".onnx":
                    with OrtRunner(path, "int8") as q:
                        row["onnxruntime"] = deltas(ref, ref_probs, probs_of(q, x, 16), labels, bundle.classes)
            out["methods"][method] = row
        if not args.skip_latency:
            from dsedge.engines.openvino_runner import OpenVinoRunner

            runners["openvino fp32"] = OpenVinoRunner.from_bundle(bundle, "fp32", threads=args.threads)
            runners["torch eager fp32"] = TorchRunner(checkpoint=args.checkpoint, threads=args.threads,
                                                      device="cpu") if args.checkpoint else \
                TorchRunner.from_bundle(bundle, "fp32", device="cpu", threads=args.threads)
            out["latency"] = interleaved_latency(runners, x[:1], args.runs, args.warmup)
            eager = out["latency"]["torch eager fp32"]["p50_ms"]
            for lat in out["latency"].values():
                lat["speedup_vs_torch_eager_p50"] = eager / lat["p50_ms"]
    finally:
        for r in runners.values():
            r.close()
        shutil.rmtree(work, ignore_errors=True)
    return out


def to_markdown(res: dict[str, Any]) -> str:
    """The comparison table for benchmarks/RESULTS.md."""
    def f(v: Any, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    lat = res.get("latency", {})
    lines = [f"Machine: {res['machine'].get('model')}; {res['eval_images']} '{res['eval_split']}' images, "
             f"{res['calibration_images']} calibration images, {res['image_size']} px, batch 1, "
             f"threads {res['threads'] or 'default'}.", "",
             "| method | backend | agreement % | delta ACC (pts) | delta MEL AUC | delta SK AUC | delta mean AUC "
             "| OpenVINO p50 ms | x torch eager |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, row in res["methods"].items():
        if "error" in row:
            lines.append(f"| {method} | – | {row['error']} | | | | | | |")
            continue
        ov_lat = lat.get(f"openvino int8 {method}", {})
        for backend in ("openvino", "onnxruntime"):
            d = row.get(backend)
            if d is None:
                continue
            timing = (f"{f(ov_lat.get('p50_ms'), '.2f')} | {f(ov_lat.get('speedup_vs_torch_eager_p50'), '.2f')}"
                      if backend == "openvino" else "– | –")
            lines.append(f"| {method} | {backend} | {100 * d['top1_agreement']:.2f} | {d['delta_acc_points']:+.2f} "
                         f"| {f(d['delta_mel_auc'], '+.4f')} | {f(d['delta_sk_auc'], '+.4f')} "
                         f"| {f(d['delta_mean_auc'], '+.4f')} | {timing} |")
    for name in ("openvino fp32", "torch eager fp32"):
        if name in lat:
            lines.append(f"| FP32 | {name} | 100.00 | – | – | – | – | {lat[name]['p50_ms']:.2f} "
                         f"| {lat[name]['speedup_vs_torch_eager_p50']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="bundle exported from the trained model (dsedge export)")
    p.add_argument("--checkpoint", help="the same model's checkpoint, for the PyTorch eager FP32 row")
    p.add_argument("--qat-checkpoint", help="QAT fine-tuned checkpoint (dsedge.calibration.qat) for the qat row")
    p.add_argument("--data", default=os.environ.get("DSEDGE_ISIC2017"), help="ISIC 2017 folder (train + val)")
    p.add_argument("--methods", default=",".join(ALL_METHODS))
    p.add_argument("--num-images", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-fp", default="depthwise")
    p.add_argument("--eval-split", default="val")
    p.add_argument("--eval-limit", type=int, default=0, help="only the first N eval images (smoke runs)")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--json")
    p.add_argument("--md")
    args = p.parse_args()
    if not args.data:
        p.error("--data (or DSEDGE_ISIC2017) is required")
    res = run(args)
    md = to_markdown(res)
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    if args.md:
        Path(args.md).write_text(md)


if __name__ == "__main__":
    main()
