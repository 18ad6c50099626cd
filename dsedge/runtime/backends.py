"""Which engine runs a bundle on this machine, and how to get every output of one engine call.

Backends of the torch-free runtime:

| backend     | artifacts                                   | precisions        |
|-------------|---------------------------------------------|-------------------|
| tensorrt    | model.<prec>.<gpu>.plan built here           | fp16, int8, fp32  |
| onnxruntime | model.onnx / model.fp16.onnx / model.int8.onnx | fp32, fp16, int8 |
| openvino    | model.onnx (fp32, bf16), model.int8.onnx (int8) | fp32, bf16, int8 |

"auto" tries TensorRT and falls back to ONNX Runtime (why is kept in `fallback_reason`);
OpenVINO is chosen explicitly: it is the fastest CPU path (INT8 5.4 ms vs ORT FP32 15.6 ms on
a 2-core AVX-512 VNNI CPU, DESIGN §6) but an optional package. OpenVINO runs through the engine
registry's `openvino` entry, `dsedge.engines.openvino_runner.OpenVinoRunner` (torch-free; it
inlines the `dsedge::SimAM` functions with `onnx.inliner.inline_local_functions`, which
OpenVINO's ONNX frontend needs). Its INT8 is the bundle's Q/DQ `model.int8.onnx`: OpenVINO executes
the quantized convolutions as INT8 kernels and the rest in FP32.

`all_outputs` returns every graph output of one engine call by name, so a bundle exported with
`--cam` gives logits and class-activation maps from the same run on every backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dsedge.bundle import Bundle
from dsedge.engines.base import Runner, check_batch
from dsedge.errors import BundleError, DsedgeError, EngineError

BACKENDS = ("auto", "tensorrt", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Preference when no precision is asked for: TensorRT engines are built for speed (fp16 first);
# ONNX Runtime on a CPU computes FP16 in FP32 anyway, so the FP32 model is its best choice.
TRT_ORDER = ("fp16", "int8", "fp32")
ORT_ORDER = ("fp32", "fp16", "int8")
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


def check_choice(value: str | None, allowed: tuple[str, ...], what: str) -> None:
    if value is not None and value not in allowed:
        raise DsedgeError(f"unknown {what} {value!r}", f"use one of: {', '.join(allowed)}")


def onnx_path(bundle: Bundle, precision: str):  # noqa: ANN201 - a Path
    """The bundle's ONNX artifact of `precision` (the canonical file name when there are several)."""
    names = bundle.find("onnx", precision)
    if not names:
        bundle.require("onnx", precision)  # raises a BundleError that lists what the bundle has
    canonical = ONNX_FILES.get(precision)
    return bundle.path(canonical if canonical in names else names[0])


def select_runner(bundle: Bundle, backend: str, precision: str | None, *, device: int = 0,
                  providers: Any = "auto", threads: int | None = None, cuda_graph: bool = False,
                  output: str | None = None) -> tuple[Runner, str | None]:
    """(runner, fallback_reason): the engine for `backend`/`precision` on this machine."""
    check_choice(backend, BACKENDS, "backend")
    check_choice(precision, PRECISIONS, "precision")
    if backend == "openvino":
        from dsedge.engines import registry  # lazy factories: importing it never imports torch

        return registry.get("openvino").from_bundle(bundle, precision or "fp32", threads=threads, device="cpu"), None
    if precision == "bf16":
        raise DsedgeError("bf16 runs on the OpenVINO backend only", "pass --backend openvino")
    reason = None
    if backend in ("auto", "tensorrt"):
        try:
            return _tensorrt(bundle, precision, device, cuda_graph, output), None
        except DsedgeError as e:
            if backend == "tensorrt":
                raise
            reason = e.message
    from dsedge.engines.ort_runner import OrtRunner

    if precision is None:
        precision = next((p for p in ORT_ORDER if bundle.find("onnx", p)), "fp32")
    path = onnx_path(bundle, precision)
    return OrtRunner(path, precision, providers=providers, threads=threads, output=output), reason


def _tensorrt(bundle: Bundle, precision: str | None, device: int, graph: bool, output: str | None) -> Runner:
    if not bundle.find("tensorrt", precision):
        raise BundleError(f"bundle {bundle.root} has no TensorRT engine" + (f" for {precision}" if precision else ""),
                          "run `dsedge build BUNDLE --precision ...` on this device")
    from dsedge.engines.trt_runner import TrtRunner  # imports tensorrt lazily, raises if missing

    order = [precision] if precision else [p for p in TRT_ORDER if bundle.find("tensorrt", p)]
    errors = []
    for p in order:
        try:
            return TrtRunner.from_bundle(bundle, p, device=device, cuda_graph=graph, output=output)
        except EngineError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    raise EngineError("; ".join(e.message for e in errors), errors[0].hint)


def all_outputs(runner: Runner, batch: np.ndarray, logits_name: str | None) -> dict[str, np.ndarray]:
    """Every output of one engine call, by name; the logits are also under "logits"."""
    x = check_batch(batch)
    outs: dict[str, np.ndarray]
    if callable(getattr(runner, "infer_all", None)):  # OpenVINO
        outs = runner.infer_all(x)
    elif getattr(runner, "session", None) is not None and hasattr(runner.session, "get_outputs"):  # ONNX Runtime
        names = [o.name for o in runner.session.get_outputs()]
        values = runner.session.run(names, {runner.input_name: x})
        outs = {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values, strict=True)}
    else:
        outs = {logits_name or "": runner.infer(x)}
        outs.update(_tensorrt_extra_outputs(runner, len(x), logits_name))
    key = logits_name if logits_name in outs else next(iter(outs))
    outs["logits"] = outs[key]
    return outs


def _tensorrt_extra_outputs(runner: Runner, n: int, logits_name: str | None) -> dict[str, np.ndarray]:
    """The TensorRT runner copies every output to host memory on each run: read the others back."""
    host, context = getattr(runner, "host", None), getattr(runner, "context", None)
    out: dict[str, np.ndarray] = {}
    for name in getattr(runner, "output_names", []):
        if name == logits_name or host is None or context is None:
            continue
        shape = tuple(int(d) for d in context.get_tensor_shape(name))
        count = int(np.prod(shape))
        out[name] = np.array(host[name].array.reshape(-1)[:count].reshape(shape)[:n], dtype=np.float32)
    return out
