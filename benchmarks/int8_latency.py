"""INT8 (TensorRT Q/DQ form) vs FP32: accuracy deltas on ISIC 2017 validation and ORT CPU batch-1 latency.

Usage::

    python benchmarks/int8_latency.py --data $DSEDGE_ISIC2017 --checkpoint runs/x/best.safetensors \
        [--num-images 512] [--latency-size 224] [--runs 60] [--json benchmarks/results/int8.json]

Accuracy: the checkpoint is exported (`export_bundle`) and calibrated
(`calibrate_bundle`) exactly as `dsedge export` + `dsedge calibrate` do, first
with no budget (so the fully quantized model's deltas and the per-group
sensitivity are always reported), then with `--max-acc-drop` when the full
model misses it. Without `--checkpoint` a random-init model is used and the
output says so.

Latency: ONNX Runtime CPU, batch 1, FP32 `model.onnx` vs `model.int8.onnx`
at `--latency-size`, measured in alternating rounds in one process so both
see the same machine load. When the checkpoint was trained at another size the
latency bundle is a random-init export at `--latency-size` (weights do not
change the graph or the kernels ORT picks). No CPU speed target: TensorRT is
what the Q/DQ model is for (DESIGN §5).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def cpu_name() -> str:
    """CPU model for the results table (same source as `dsedge doctor`)."""
    from dsedge.doctor import cpu_info

    return str(cpu_info()["model"])


def accuracy_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from dsedge.calibration.int8 import calibrate_bundle
    from dsedge.errors import CalibrationError
    from dsedge.export.bundle import export_bundle

    src = Path(args.checkpoint) if args.checkpoint else None
    bundle = export_bundle(src, work / "acc", model_name="ds_resnet50", random_init=src is None,
                           image_size=None if src else args.latency_size, data=Path(args.data), parity_images=16)
    t0 = time.perf_counter()
    free = calibrate_bundle(bundle, args.data, num_images=args.num_images, max_acc_drop=100.0,
                            sensitivity="always", method=args.method, on_step=lambda m: print("  ", m, flush=True))
    out: dict[str, Any] = {
        "model": f"checkpoint {src.name}" if src else "random-init (untrained)",
        "image_size": json.loads((bundle / "dsedge.json").read_text())["preprocessing"]["crop"],
        "calibration_images": free["num_images"],
        "method": args.method,
        "calibrate_seconds": round(time.perf_counter() - t0, 1),
        "fp32": free["accuracy"]["fp32"],
        "int8_all_layers": free["sensitivity"]["int8_all_groups"],
        "groups": free["sensitivity"]["groups"],
    }
    if free["sensitivity"]["int8_all_groups"]["acc_drop_points"] > args.max_acc_drop:
        try:
            fit = calibrate_bundle(bundle, args.data, num_images=args.num_images, max_acc_drop=args.max_acc_drop,
                                   method=args.method)
            out["int8_within_budget"] = {**fit["accuracy"]["int8"], "kept_float": fit["kept_float_groups"]}
        except CalibrationError as e:
            out["int8_within_budget"] = {"error": e.message}
    else:
        out["int8_within_budget"] = {**out["int8_all_layers"], "kept_float": []}
    return out


def latency_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from dsedge.calibration.int8 import calibrate_bundle
    from dsedge.engines.ort_runner import OrtRunner
    from dsedge.export.bundle import export_bundle
    from dsedge.runtime.bundle import load_bundle
    from dsedge.runtime.preprocess import preprocess_files

    bundle = export_bundle(None, work / "lat", model_name="ds_resnet50", random_init=True,
                           image_size=args.latency_size)
    t0 = time.perf_counter()  # the bench's default job: synthetic calibration of a random-init bundle
    calibrate_bundle(bundle, None, synthetic=True, num_images=16)
    synthetic_s = time.perf_counter() - t0
    if args.data:
        calibrate_bundle(bundle, args.data, num_images=64, max_acc_drop=100.0, sensitivity=False)
    b = load_bundle(bundle)
    if args.data:
        from dsedge.data import load_split

        x = preprocess_files([load_split(args.data, "val").samples[0].path], b.preprocessing)
    else:
        x = np.random.default_rng(0).standard_normal((1, 3, args.latency_size, args.latency_size)).astype(np.float32)
    # Interleaved sessions: no spin-waiting, or the idle one steals the cores from the running one.
    runners = {"fp32": OrtRunner(bundle / "model.onnx", "fp32", threads=args.threads, allow_spinning=False),
               "int8": OrtRunner(bundle / "model.int8.onnx", "int8", threads=args.threads, allow_spinning=False)}
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in runners.values():
        for _ in range(args.warmup):
            r.infer(x)
    per_round = 5
    for _ in range(max(1, args.runs // per_round)):  # alternate so both see the same machine load
        for name, r in runners.items():
            for _ in range(per_round):
                t = time.perf_counter()
                r.infer(x)
                times[name].append((time.perf_counter() - t) * 1000)
    out: dict[str, Any] = {"image_size": args.latency_size, "batch": 1,
                           "threads": args.threads or os.cpu_count(), "model": "random-init DS-ResNet50",
                           "calibrated_on": "64 ISIC training images" if args.data else "16 synthetic images",
                           "synthetic_calibration_seconds": round(synthetic_s, 1)}
    for name, ts in times.items():
        a = np.asarray(ts)
        out[name] = {"mean_ms": float(a.mean()), "p50_ms": float(np.percentile(a, 50)),
                     "p90_ms": float(np.percentile(a, 90)), "min_ms": float(a.min()), "n": len(a)}
    out["int8_speedup_p50"] = out["fp32"]["p50_ms"] / out["int8"]["p50_ms"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("DSEDGE_ISIC2017"), help="ISIC 2017 folder (train + val)")
    p.add_argument("--checkpoint", help="trained checkpoint (.safetensors); random init without it")
    p.add_argument("--num-images", type=int, default=512)
    p.add_argument("--method", default="percentile")
    p.add_argument("--max-acc-drop", type=float, default=0.5)
    p.add_argument("--latency-size", type=int, default=224)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()

    import onnxruntime

    result: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with tempfile.TemporaryDirectory(prefix="int8-bench-") as tmp:
        if args.data and not args.skip_accuracy:
            print("accuracy on ISIC 2017 validation ...", flush=True)
            result["accuracy"] = accuracy_part(args, Path(tmp))
        print("latency ...", flush=True)
        result["latency"] = latency_part(args, Path(tmp))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
