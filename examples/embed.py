"""Minimal device embedding: classify images with a dsedge bundle, using only `dsedge.runtime`.

    python examples/embed.py BUNDLE IMAGE [IMAGE ...]

No torch is needed on the device: the Predictor verifies the bundle's hashes,
runs the TensorRT engine built for this GPU when there is one (and tensorrt +
cuda-python are installed), otherwise ONNX Runtime, and preprocesses with
NumPy + Pillow exactly like training-time evaluation.
"""

from __future__ import annotations

import sys

from dsedge.errors import DsedgeError
from dsedge.runtime import Predictor


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    bundle, images = argv[0], argv[1:]
    try:
        with Predictor(bundle) as predictor:  # backend="auto": TensorRT if possible, else ONNX Runtime
            info = predictor.info
            print(f"runner: {info.backend} {info.precision} on {info.device}")
            for r in predictor.predict(images):
                probs = "  ".join(f"{c}={p:.3f}" for c, p in r["probabilities"].items())
                print(f"{r['image']}: {r['top_class']}  ({probs})")
    except DsedgeError as e:  # bad bundle, missing image, engine for another GPU...
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
