"""ONNX Runtime CPU batch-1 latency: SimAM as `dsedge::SimAM` functions vs the inlined (flat) graph.

Both forms are timed in the same process, interleaved round by round (A, B, A,
B, ...) so that load from other processes hits both equally. Usage:

    python benchmarks/export_latency.py BUNDLE [--runs 200] [--threads 2] [--out results.md]

BUNDLE is made by `dsedge export ... [--inline-simam]`; without a
`model.inline.onnx` the flat variant is derived from `model.onnx` in memory.
The FP16 artifact is timed too for reference (ORT CPU runs it mostly in FP32).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from dsedge.export.simam_function import count_simam_calls, inline_simam
from dsedge.runtime.bundle import load_bundle


def _cpu_name() -> str:
    """CPU model for the results table (same source as `dsedge doctor`)."""
    from dsedge.doctor import cpu_info

    return str(cpu_info()["model"])


def _session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The sessions are interleaved: an idle session's spinning threads would steal the cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _stats(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"mean": statistics.fmean(s), "p50": s[len(s) // 2], "p90": s[int(0.9 * (len(s) - 1))],
            "min": s[0], "n": len(s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="append a Markdown table here")
    args = ap.parse_args()

    bundle = load_bundle(args.bundle)
    fn = onnx.load(str(bundle.require("onnx", "fp32")))
    inline_names = bundle.find("onnx-inline", "fp32")
    flat = onnx.load(str(bundle.path(inline_names[0]))) if inline_names else inline_simam(fn)
    fp16 = onnx.load(str(bundle.require("onnx", "fp16")))
    forms = {
        f"function form ({count_simam_calls(fn)} dsedge::SimAM)": fn,
        "inlined form (plain ops)": flat,
        "fp16 function form": fp16,
    }
    sessions = {name: _session(m, args.threads) for name, m in forms.items()}
    _, c, h, w = bundle.manifest["input"]["shape"]
    x = np.random.default_rng(0).standard_normal((1, c, h, w), dtype=np.float32)
    outs = {name: s.run(None, {"input": x})[0] for name, s in sessions.items()}
    ref = next(iter(outs.values()))
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(args.warmup + args.runs):
        for name, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"input": x})
            if i >= args.warmup:
                times[name].append((time.perf_counter() - t) * 1e3)

    head = (f"ONNX Runtime {ort.__version__} CPUExecutionProvider, {_cpu_name()}, "
            f"{args.threads} intra-op threads, batch 1, {h}x{w}, {args.runs} runs after "
            f"{args.warmup} warm-up, interleaved; model {bundle.manifest['model']['name']} "
            f"({'random init' if bundle.manifest['model'].get('random_init') else 'checkpoint'})")
    lines = [head, "", "| form | nodes | mean ms | p50 ms | p90 ms | min ms | max abs logit diff vs function form |",
             "|---|---|---|---|---|---|---|"]
    for name, model in forms.items():
        st = _stats(times[name])
        diff = float(np.abs(outs[name] - ref).max())
        lines.append(f"| {name} | {len(model.graph.node)} | {st['mean']:.2f} | {st['p50']:.2f} | "
                     f"{st['p90']:.2f} | {st['min']:.2f} | {diff:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
