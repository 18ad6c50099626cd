"""Which installed distributions a torch-free device install must not have (used by .ci/runtime_only.sh).

The check used to look for the `nvidia-` prefix only, so CUDA wheels named otherwise
(`cuda-toolkit`, `cuda-bindings`, `cuda-python`, `cuda-pathfinder`, `tensorrt-cu12-libs`,
`onnxruntime-gpu`) passed. A name is heavy when it is torch's own, NVIDIA's CUDA or
TensorRT wheels under any of their names, or a GPU build of ONNX Runtime.
Usage: python .ci/heavy_wheels.py   (exit 1 and the names when any is installed)
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys

HEAVY = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-triton.*|nvidia-.+|cuda-.+|cupy.*|"
                   r"tensorrt.*|onnxruntime-gpu|jax-cuda.*)$")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def heavy(names: list[str]) -> list[str]:
    """The heavy ones among distribution `names`, normalized and sorted."""
    return sorted({normalize(n) for n in names if HEAVY.match(normalize(n))})


def main() -> int:
    names = [d.metadata["Name"] or "" for d in md.distributions()]
    found = heavy(names)
    if found:
        print(f"the device install pulled {found}")
        return 1
    print(f"{len(names)} distributions, none of them torch/CUDA/TensorRT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
