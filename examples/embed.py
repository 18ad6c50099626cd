"""Minimal device embedding: a decision per image with a dsedge bundle, using only `dsedge.runtime`.

    python examples/embed.py BUNDLE IMAGE [IMAGE ...]

No torch is needed on the device: the Predictor verifies the bundle's hashes, checks each image's
quality (too small, too dark, blurred... -> "cannot assess"), runs the TensorRT engine built for
this GPU when there is one (and tensorrt + cuda-python are installed), otherwise ONNX Runtime,
and applies the bundle's calibrated melanoma operating point: "refer", a benign class, or
"cannot assess". A file that cannot be read gets an error entry; the others still run.
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
    failed = 0
    try:
        with Predictor(bundle) as predictor:  # backend="auto": TensorRT if possible, else ONNX Runtime
            info = predictor.info
            print(f"runner: {info.backend} {info.precision} on {info.device}")
            for r in predictor.predict(images):
                if r["error"]:
                    print(f"{r['image']}: error: {r['error']}", file=sys.stderr)
                    failed += 1
                elif r["probabilities"] is None:
                    print(f"{r['image']}: {r['decision']} ({', '.join(r['reasons'])})")
                else:
                    flag = "  [uncertain]" if r["uncertain"] else ""
                    print(f"{r['image']}: {r['decision']}  melanoma risk {r['melanoma_risk']:.3f}{flag}")
    except DsedgeError as e:  # bad bundle, engine for another GPU...
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
