"""Where the Q/DQ pairs go, and how many FP32 decisions each placement flips (issue 22).

Every conv INT8 except the head, the same percentile ranges, four placements:

* `ort-default`: ONNX Runtime's own placement (every op type it can quantize: residual Adds,
  ReLU and pooling too; one DequantizeLinear shared by all readers of a tensor);
* `weighted`: Q/DQ only in front of weighted ops (Conv, Gemm, MatMul);
* `weighted-dw-float`: the same with the depthwise 3x3 convs float;
* `calibrate-default`: the same with the non-weighted readers (residual Adds) rewired to the float
  tensor (`dsedge.calibration.int8.unweighted_reads_float`): what `dsedge calibrate` builds.

Agreement is counted on each val image's first `--views` orientations on OpenVINO (ONNX Runtime
with `--runtime onnxruntime`). Usage (~5 min at 224 px on 2 idle cores)::

    python benchmarks/qdq_placement.py BUNDLE --data $DSEDGE_ISIC2017 --md out.md
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="an exported bundle (its model.onnx is quantized)")
    p.add_argument("--data", required=True, type=Path, help="ISIC 2017 folder (train + val)")
    p.add_argument("--num-images", type=int, default=128, help="training images for the ranges")
    p.add_argument("--views", type=int, default=4, help="orientations of each val image (1-8)")
    p.add_argument("--runtime", default="openvino", choices=("openvino", "onnxruntime"))
    p.add_argument("--md", type=Path)
    args = p.parse_args(argv)

    from dsedge.bundle import load_bundle
    from dsedge.calibration import int8
    from dsedge.calibration import reader as rd
    from dsedge.calibration.macs import int8_mac_fraction
    from dsedge.calibration.sensitivity import node_kinds
    from dsedge.data.loader import load_split
    from dsedge.runtime.decision import top2_margin

    b = load_bundle(args.bundle)
    fp32 = b.root / "model.onnx"
    import onnx

    kinds = node_kinds(onnx.load(str(fp32), load_external_data=False))
    head, depthwise = kinds["head"], kinds["depthwise"]
    val = load_split(args.data, "val")
    x, _ = int8.eval_inputs(val, b.preprocessing, args.views)
    ref = int8.predict_probs(fp32, x)
    margin = top2_margin(ref)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dsedge-placement-") as tmp_name:
        tmp = Path(tmp_name)
        cset = rd.select_images(load_split(args.data, "train"), args.num_images, seed=0)
        ranges = int8.compute_ranges(fp32, cset, b.preprocessing, "percentile", tmp)
        placements = {
            "ort-default": dict(op_types=int8._op_types(), float_residual=False, nodes_to_exclude=head),
            "weighted": dict(float_residual=False, nodes_to_exclude=head),
            "weighted-dw-float": dict(float_residual=False, nodes_to_exclude=head + depthwise),
            "calibrate-default": dict(nodes_to_exclude=head + depthwise),
        }
        for name, kw in placements.items():
            path = int8.quantize_with_ranges(fp32, tmp / f"{name}.onnx", ranges, "percentile", **kw)
            probs = int8.runtime_probs(path, x, args.runtime)
            flips = int((probs.argmax(1) != ref.argmax(1)).sum())
            rows.append((name, int8_mac_fraction(path)["fraction"], flips))
            print(f"{name}: {flips} of {len(x)} flipped", flush=True)
    lines = [f"# Q/DQ placement: FP32 decisions flipped, every conv INT8 but the head ({b.root.name}, "
             f"{b.preprocessing['crop']} px)", "",
             f"{len(val)} val images x {args.views} orientations = {len(x)} inputs on {args.runtime}; percentile "
             f"ranges on {args.num_images} training images; {int((margin < 0.01).sum())} inputs have an FP32 "
             "top-2 margin below 0.01.", "",
             "| placement | INT8 share of MACs | flipped | agreement |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {100 * f:.1f} % | {k} | {100 * (1 - k / len(x)):.2f} % |" for n, f, k in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
