"""QAT weights against the bundle's own weights, quantized the same way, counted against the bundle's FP32 (issue 22).

For three Q/DQ layouts (depthwise convs and head float, calibrate's default; head float; every conv
and the head INT8), the same ranges (computed on the bundle's `model.onnx`, as `dsedge calibrate`
does), two INT8 files each: one from the bundle's weights (PTQ), one from a `dsedge qat` checkpoint
put into the bundle's graph (`dsedge calibrate --weights`). Per file: FP32 decisions flipped on each
val image's first `--views` orientations, how many of those flips had an FP32 top-2 margin of at
least 0.01 (not near-ties), and the mean |delta P| over classes. Also the QAT weights in float
against the bundle's FP32 (the drift that makes them a recipe, not a model). Usage (~6 min at
224 px on 2 idle cores)::

    python benchmarks/qat_vs_ptq.py BUNDLE --weights QAT.safetensors --data $DSEDGE_ISIC2017 --md out.md
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="an exported bundle (its model.onnx is the reference)")
    p.add_argument("--weights", required=True, type=Path, help="a `dsedge qat --bundle BUNDLE` checkpoint")
    p.add_argument("--data", required=True, type=Path, help="ISIC 2017 folder (train + val)")
    p.add_argument("--num-images", type=int, default=512, help="training images for the ranges (= QAT's)")
    p.add_argument("--views", type=int, default=4, help="orientations of each val image (1-8)")
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
    from dsedge.runtime.decision import top2_margin

    b = load_bundle(args.bundle)
    fp32 = b.root / "model.onnx"
    kinds = node_kinds(onnx.load(str(fp32), load_external_data=False))
    val = load_split(args.data, "val", classes=b.classes)
    x, _ = int8.eval_inputs(val, b.preprocessing, args.views)
    ref = int8.predict_probs(fp32, x)
    top1, sure = ref.argmax(1), top2_margin(ref) >= 0.01
    layouts = {"depthwise + head float (calibrate's default)": kinds["head"] + kinds["depthwise"],
               "head float": kinds["head"], "every conv and the head INT8": []}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dsedge-qat-vs-ptq-") as tmp_name:
        tmp = Path(tmp_name)
        qat_fp32, _ = weights_source(b, args.weights, tmp / "qat.onnx")
        drift = int((int8.predict_probs(qat_fp32, x).argmax(1) != top1).sum())
        cset = rd.select_images(load_split(args.data, "train", classes=b.classes), args.num_images, seed=0)
        ranges = int8.compute_ranges(fp32, cset, b.preprocessing, "percentile", tmp)
        for i, (layout, exclude) in enumerate(layouts.items()):
            for weights, source in (("bundle (PTQ)", fp32), ("QAT", qat_fp32)):
                path = int8.quantize_with_ranges(source, tmp / f"{i}-{weights[:3]}.onnx", ranges, "percentile",
                                                 nodes_to_exclude=exclude)
                probs = int8.runtime_probs(path, x, args.runtime)
                flipped = probs.argmax(1) != top1
                rows.append((layout, weights, int8_mac_fraction(path)["fraction"], int(flipped.sum()),
                             int((flipped & sure).sum()), float(np.abs(probs - ref).mean())))
                print(f"{layout} / {weights}: {rows[-1][3]} of {len(x)} flipped", flush=True)
    lines = [f"# QAT against PTQ: FP32 decisions flipped ({b.root.name}, {b.preprocessing['crop']} px, "
             f"{args.weights.name})", "",
             f"{len(val)} val images x {args.views} orientations = {len(x)} inputs on {args.runtime}; percentile "
             f"ranges of the bundle's model.onnx on {args.num_images} training images; {int((~sure).sum())} "
             f"inputs have an FP32 top-2 margin below 0.01. The QAT weights in float flip {drift} of the {len(x)} FP32 "
             "decisions.", "",
             "| INT8 layout | weights | INT8 share of MACs | flipped | of them margin >= 0.01 | mean abs delta P |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {lay} | {w} | {100 * f:.1f} % | {k} | {s} | {d:.4f} |" for lay, w, f, k, s, d in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
