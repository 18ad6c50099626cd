"""What export records in `dsedge.json` beyond the artifacts: tool versions and measured parity.

Parity is ONNX Runtime (CPU) against the PyTorch model that was exported, on the
same float32 batch: real images from a data split when one is given (run
through the runtime's own preprocessing, `dsedge.runtime.preprocess`), else a
seeded random batch — the block says which. FP32 must match within
`FP32_TOLERANCE` (1e-4) on the logits or export fails; the tolerance scales with
the largest reference logit when that exceeds 1, since float32 cannot hold 1e-4
absolute on logits of 1e6+ (random-init Inception v3 reaches 1e12). FP16 reports
top-1 agreement and the largest probability difference. Note that ONNX Runtime's CPU provider
computes most float16 ops in float32, so on CPU the FP16 numbers measure weight
rounding; true float16 arithmetic is measured by the TensorRT/GPU bench.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dsedge.comparator import compare as compare_outputs
from dsedge.errors import ExportError

FP32_TOLERANCE = 1e-4
RANDOM_SEED = 0
RANDOM_COUNT = 8
CHUNK = 16

_TOOLS = ("torch", "onnx", "onnxruntime", "onnxscript", "onnxconverter-common")


def tool_versions() -> dict[str, str]:
    """Versions of the packages that shaped the artifacts (plus dsedge and Python)."""
    from dsedge import __version__
    from dsedge.machine import package_versions, system

    return {"dsedge": __version__, "python": system()["python"], **package_versions(_TOOLS, missing="not installed")}


@dataclass
class ParityInputs:
    """The float32 batch parity runs on, and a description of where it came from."""

    batch: np.ndarray
    source: dict[str, Any]


def parity_inputs(
    data: Path | None,
    split: str,
    count: int,
    preprocessing: dict[str, Any],
    image_size: int,
) -> ParityInputs:
    """Real images (first `count` of `split`, preprocessed by the runtime) or a seeded random batch."""
    if count < 1:
        raise ExportError(f"parity needs at least 1 image, got {count}")
    if data is None:
        rng = np.random.default_rng(RANDOM_SEED)
        n = min(count, RANDOM_COUNT)
        batch = rng.standard_normal((n, 3, image_size, image_size), dtype=np.float32)
        return ParityInputs(batch, {"kind": "random", "count": n, "seed": RANDOM_SEED,
                                    "distribution": "standard normal (normalised space)"})
    from dsedge.data import load_split
    from dsedge.runtime.preprocess import preprocess_files

    ds = load_split(data, split)
    if not ds.samples:
        raise ExportError(f"split '{split}' of {data} has no images for the parity check")
    samples = ds.samples[:count]
    batch = preprocess_files([s.path for s in samples], preprocessing)
    return ParityInputs(batch, {
        "kind": "images", "data": str(data), "split": split, "count": len(samples),
        "fingerprint": ds.fingerprint(), "preprocessing": "dsedge.runtime.preprocess",
    })


def _chunks(batch: np.ndarray) -> list[np.ndarray]:
    return [batch[i:i + CHUNK] for i in range(0, len(batch), CHUNK)]


def torch_logits(model: Any, batch: np.ndarray) -> np.ndarray:
    """The PyTorch float32 reference logits (eval mode, no grad, chunked)."""
    import torch

    model.eval()
    outs = []
    with torch.inference_mode():
        for chunk in _chunks(batch):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(chunk))).float().numpy())
    return np.concatenate(outs)


def ort_logits(model: onnx.ModelProto | Path, batch: np.ndarray) -> np.ndarray:
    """Logits from ONNX Runtime's CPU provider (first output), chunked like the reference."""
    import onnxruntime as ort

    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        raise ExportError(f"ONNX Runtime cannot load the exported model: {e}") from e
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: chunk})[0] for chunk in _chunks(batch)])


def compare(ref_logits: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """The manifest's parity entry of one artifact: `dsedge.comparator.compare` on logits, in the
    keys stored bundles already carry.

    Non-finite outputs (float16 overflow on a model with huge activations, e.g.
    a random-init Inception v3) are counted and make the diffs `None` rather
    than writing NaN into the JSON manifest.
    """
    c = compare_outputs(ref_logits, logits, logits=True)
    out: dict[str, Any] = {"max_abs_logit_diff": c.max_abs_logit_diff, "mean_abs_logit_diff": c.mean_abs_logit_diff,
                           "max_abs_prob_diff": c.max_abs_prob_diff, "top1_agreement": c.top1_agreement}
    if c.nonfinite_outputs:
        out["nonfinite_outputs"] = c.nonfinite_outputs
    return out


def measure_parity(
    torch_model: Any,
    artifacts: Sequence[tuple[str, onnx.ModelProto, str]],
    inputs: ParityInputs,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The manifest's `parity` block for `(filename, model, precision)` artifacts.

    FP32 artifacts must match the reference within `FP32_TOLERANCE` x max(1,
    max |reference logit|) (max |logit diff|), otherwise `ExportError`: a bundle that silently disagrees with the
    trained model must never be written.
    """
    import onnxruntime as ort

    say = progress or (lambda _msg: None)
    say(f"parity: PyTorch reference on {len(inputs.batch)} inputs")
    ref = torch_logits(torch_model, inputs.batch)
    if not np.isfinite(ref).all():
        raise ExportError("the PyTorch model itself produces non-finite logits on the parity inputs")
    scale = float(np.abs(ref).max())
    block: dict[str, Any] = {
        "inputs": inputs.source,
        "reference": "PyTorch float32, CPU",
        "reference_max_abs_logit": scale,
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        "artifacts": {},
    }
    for filename, model, precision in artifacts:
        say(f"parity: ONNX Runtime {filename}")
        result = compare(ref, ort_logits(model, inputs.batch))
        if precision == "fp32":
            tolerance = FP32_TOLERANCE * max(1.0, scale)
            result["tolerance"] = tolerance
            diff = result["max_abs_logit_diff"]
            result["passed"] = diff is not None and diff <= tolerance
            if not result["passed"]:
                raise ExportError(
                    f"{filename}: ONNX Runtime differs from PyTorch by "
                    f"{diff if diff is None else f'{diff:.3g}'} (max |logit diff|, tolerance {tolerance:g})",
                    "this is an exporter bug; try --inline-simam or another --opset, and report it",
                )
        elif precision == "fp16":
            result["note"] = ("ONNX Runtime CPU runs most float16 ops in float32: this measures "
                              "float16 weight rounding, not float16 arithmetic")
        block["artifacts"][filename] = result
    return block
