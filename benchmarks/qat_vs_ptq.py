"""QAT weights against the bundle's own weights, quantized the same way, counted against the bundle's FP32 (issue 22).

For three Q/DQ layouts (depthwise convs and head float, calibrate's default; head float; every conv
and the head INT8), the same ranges (computed on the bundle's `model.onnx`, as `dsedge calibrate`
does), one INT8 file from the bundle's weights (PTQ) and one from each `dsedge qat` checkpoint put
into the bundle's graph (`dsedge calibrate --weights`). Per file: FP32 decisions flipped on each eval
image's first `--views` orientations, how many of those flips had an FP32 top-2 margin of at least
0.01 (not near-ties), and the mean |delta P| over classes. Also the QAT weights in float against the
bundle's FP32 (the drift that makes them a recipe, not a model), and calibrate's layout with only
the weights INT8 (every conv reads its input in float): what the activation ranges cost.

`--eval tuning` counts on the slice of training images the bundle's checkpoint held out (400 for
the shipped model: 3,200 inputs at 8 views, enough to tell 58 flips from 69), so that choosing
a QAT recipe never looks at val. Usage (~6 min at 224 px on 2 idle cores for val x 4 views)::

    python benchmarks/qat_vs_ptq.py BUNDLE --weights QAT.safetensors [--weights QAT2.safetensors] \
        --data $DSEDGE_ISIC2017 [--eval tuning --views 8] --md out.md
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="an exported bundle (its model.onnx is the reference)")
    p.add_argument("--weights", required=True, type=Path, action="append",
                   help="a `dsedge qat --bundle BUNDLE` checkpoint (repeat to compare several)")
    p.add_argument("--eval", default="val", choices=("val", "tuning"),
                   help="val, or the tuning slice the bundle's checkpoint held out of training")
    p.add_argument("--data", required=True, type=Path, help="ISIC 2017 folder (train + val)")
    p.add_argument("--num-images", type=int, default=512, help="training images for the ranges (= QAT's)")
    p.add_argument("--views", type=int, default=4, help="orientations of each eval image (1-8)")
    p.add_argument("--runtime", default="openvino", choices=("openvino", "onnxruntime"))
    p.add_argument("--md", type=Path)
    args = p.parse_args(argv)

    import numpy as np
    import onnx

    from dsedge.bundle import load_bundle
    from dsedge.calibration import int8
    from dsedge.calibration import reader as rd
    from dsedge.calibration.macs import int8_mac_fraction
    from dsedge.calibration.sensitivity import node_kinds
    from dsedge.calibration.weights import weights_source
    from dsedge.data.loader import load_split
    from dsedge.data.splits import tuning_split_from_record
    from dsedge.errors import DsedgeError
    from dsedge.runtime.decision import top2_margin

    b = load_bundle(args.bundle)
    fp32 = b.root / "model.onnx"
    kinds = node_kinds(onnx.load(str(fp32), load_external_data=False))
    if args.eval == "tuning":
        if not b.tuning_split:
            raise DsedgeError(f"{b.root}'s checkpoint recorded no tuning slice", hint="use --eval val")
        evalset = tuning_split_from_record(args.data, b.tuning_split)
    else:
        evalset = load_split(args.data, "val", classes=b.classes)
    x, _ = int8.eval_inputs(evalset, b.preprocessing, args.views)
    ref = int8.predict_probs(fp32, x)
    top1, sure = ref.argmax(1), top2_margin(ref) >= 0.01
    layouts = {"depthwise + head float (calibrate's default)": kinds["head"] + kinds["depthwise"],
               "head float": kinds["head"], "every conv and the head INT8": []}
    rows = []

    def count(layout: str, weights: str, path: Path) -> None:
        probs = int8.runtime_probs(path, x, args.runtime)
        flipped = probs.argmax(1) != top1
        rows.append((layout, weights, int8_mac_fraction(path)["fraction"], int(flipped.sum()),
                     int((flipped & sure).sum()), float(np.abs(probs - ref).mean())))
        print(f"{layout} / {weights}: {rows[-1][3]} of {len(x)} flipped", flush=True)

    with tempfile.TemporaryDirectory(prefix="dsedge-qat-vs-ptq-") as tmp_name:
        tmp = Path(tmp_name)
        sources, drift = {"bundle (PTQ)": fp32}, {}
        for i, path in enumerate(args.weights):
            label = f"QAT {path.parent.name}/{path.name}" if len(args.weights) > 1 else "QAT"
            sources[label], _ = weights_source(b, path, tmp / f"qat{i}.onnx")
            drift[label] = int((int8.predict_probs(sources[label], x).argmax(1) != top1).sum())
        cset = rd.select_images(load_split(args.data, "train", classes=b.classes), args.num_images, seed=0)
        ranges = int8.compute_ranges(fp32, cset, b.preprocessing, "percentile", tmp)
        for i, (layout, exclude) in enumerate(layouts.items()):
            for j, (weights, source) in enumerate(sources.items()):
                path = int8.quantize_with_ranges(source, tmp / f"{i}-{j}.onnx", ranges, "percentile",
                                                 nodes_to_exclude=exclude)
                count(layout, weights, path)
                if i == 0 and j == 0:
                    model = onnx.load(str(path))
                    inputs_float(model)
                    onnx.save(model, str(tmp / "weights-only.onnx"))
                    count(layout, "bundle, weights INT8 only", tmp / "weights-only.onnx")
    drifts = "; ".join(f"{k}: {v}" for k, v in drift.items())
    lines = [f"# QAT against PTQ: FP32 decisions flipped ({b.root.name}, {b.preprocessing['crop']} px, "
             f"{', '.join(w.name for w in args.weights)})", "",
             f"{len(evalset)} {args.eval} images x {args.views} orientations = {len(x)} inputs on {args.runtime}; "
             f"percentile ranges of the bundle's model.onnx on {args.num_images} training images; "
             f"{int((~sure).sum())} inputs have an FP32 top-2 margin below 0.01. FP32 decisions the QAT weights "
             f"flip in float, of {len(x)}: {drifts}.", "",
             "| INT8 layout | weights | INT8 share of MACs | flipped | of them margin >= 0.01 | mean abs delta P |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {lay} | {w} | {100 * f:.1f} % | {k} | {s} | {d:.4f} |" for lay, w, f, k, s, d in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.write_text(text)
    return 0


def inputs_float(model: onnx.ModelProto) -> int:
    """Every Conv / Gemm reads its input before the Q -> DQ pair (weights stay INT8); returns how many.

    What is left is the weights' quantization error alone: the rest of the INT8 file's flips come
    from the activation ranges. The orphaned Q -> DQ pairs are removed.
    """
    from dsedge.calibration.int8 import QUANTIZED_OP_TYPES, reads_float

    return reads_float(model, lambda node: (0,) if node.op_type in QUANTIZED_OP_TYPES else ())


if __name__ == "__main__":
    raise SystemExit(main())
