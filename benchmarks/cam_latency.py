"""What the in-graph `cam` output costs: ONNX Runtime CPU batch-1 latency with and without it, side by side.

Issue 13's target: the class-activation-map output costs at most 5 % of batch-1 latency on ONNX
Runtime CPU. The two models are the same exported graph, one with `add_cam_output` applied (one
1x1 Conv on the last feature map, 2048 -> 3 channels at 7x7), so the difference is the cam alone.
They are timed in one process, interleaved run by run (A, B, A, B, ...) with intra-op spinning
off, so load from other processes hits both equally. The cam model is asked for both outputs,
as `dsedge predict --heatmaps` does.

    python benchmarks/cam_latency.py [BUNDLE] [--runs 300] [--threads 2] [--out results.md]

BUNDLE: a bundle from `dsedge export` (its model.onnx; a `cam` output is removed for the
baseline or added for the other side). Without one, a random-init DS-ResNet50 is exported at
224 px (about a minute; latency does not depend on the weights).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from dsedge.export.onnx import CAM_NAME, add_cam_output, has_cam_output


def without_cam(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` without the `cam` output, its Conv and its initializers."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    for node in [n for n in g.node if CAM_NAME in n.output]:
        g.node.remove(node)
    for o in [o for o in g.output if o.name == CAM_NAME]:
        g.output.remove(o)
    for t in [t for t in g.initializer if t.name in ("cam.weight", "cam.bias")]:
        g.initializer.remove(t)
    return out


def with_cam(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not has_cam_output(out):
        add_cam_output(out)
    return out


def source_model(bundle: Path | None, image_size: int) -> onnx.ModelProto:
    if bundle is not None:
        from dsedge.runtime.bundle import load_bundle

        return onnx.load(str(load_bundle(bundle).require("onnx", "fp32")))
    from dsedge.export.onnx import export_onnx
    from dsedge.models.zoo import create_model

    print(f"exporting a random-init ds_resnet50 at {image_size} px ...", flush=True)
    return export_onnx(create_model("ds_resnet50", num_classes=3).eval(), image_size).model


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # interleaved sessions
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def stats(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"mean": statistics.fmean(s), "p50": s[len(s) // 2], "p90": s[int(0.9 * (len(s) - 1))], "min": s[0]}


def interleaved(runs: dict[str, tuple[ort.InferenceSession, list[str]]], x: np.ndarray, n: int,
                warmup: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(warmup + n):
        for name, (sess, outputs) in runs.items():
            t0 = time.perf_counter()
            sess.run(outputs, {"input": x})
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, nargs="?")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="append a Markdown table here")
    args = ap.parse_args(argv)

    model = source_model(args.bundle, args.image_size)
    base, cam = without_cam(model), with_cam(model)
    size = int(base.graph.input[0].type.tensor_type.shape.dim[2].dim_value or args.image_size)
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    s_base, s_cam = session(base, args.threads), session(cam, args.threads)
    logits_only, both = s_cam.run(["logits", CAM_NAME], {"input": x})
    np.testing.assert_allclose(both.mean(axis=(2, 3)), logits_only, atol=1e-4)  # same model, cam is consistent
    times = interleaved({"logits": (s_base, ["logits"]), "logits + cam": (s_cam, ["logits", CAM_NAME])},
                        x, args.runs, args.warmup)
    st = {k: stats(v) for k, v in times.items()}
    overhead = 100 * (st["logits + cam"]["p50"] / st["logits"]["p50"] - 1)
    lines = [f"ONNX Runtime {ort.__version__} CPU, batch 1, {size} px, {args.threads} threads, "
             f"{args.runs} interleaved runs each; cam {tuple(both.shape)}", "",
             "| model | mean ms | p50 ms | p90 ms | min ms |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {s['mean']:.2f} | {s['p50']:.2f} | {s['p90']:.2f} | {s['min']:.2f} |" for k, s in st.items()]
    verdict = "within" if overhead <= 5 else "ABOVE"
    lines += ["", f"cam overhead at p50: {overhead:+.1f} % ({verdict} the 5 % target)"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with args.out.open("a", encoding="utf-8") as f:
            f.write(text + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
