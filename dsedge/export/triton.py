"""Write a Triton Inference Server model repository from a bundle (beyond one device).

Layout (Triton's documented repository structure)::

    REPO/<name>/config.pbtxt     platform "tensorrt_plan" or "onnxruntime_onnx"
    REPO/<name>/labels.txt       class names, one per line, in output order
    REPO/<name>/1/model.plan     (or model.onnx)

A Triton model has one platform, so with several backends the first one
available in `backends` order is `<name>` (what clients call) and each other
one gets its own model `<name>_<backend>` (e.g. `dsedge_onnx`) for A/B tests
or a CPU fallback. Input/output names, data types and dims come from the ONNX
file itself (the engine's source ONNX for TensorRT), dims without the batch
dimension, as Triton wants when `max_batch_size > 0`. `label_filename` makes
Triton's classification extension return class names.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dsedge.errors import BundleError, DsedgeError
from dsedge.runtime.bundle import Bundle, load_bundle
from dsedge.utils.io import atomic_dir

PLATFORMS = {"tensorrt": "tensorrt_plan", "onnx": "onnxruntime_onnx"}
FILES = {"tensorrt": "model.plan", "onnx": "model.onnx"}
# ONNX TensorProto element type -> Triton DataType name
ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32", 7: "TYPE_INT64",
                  3: "TYPE_INT8", 2: "TYPE_UINT8", 9: "TYPE_BOOL", 16: "TYPE_BF16"}


def _io_specs(onnx_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Graph inputs/outputs as {name, data_type, dims-without-batch} from the ONNX file."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}

    def spec(vi: Any) -> dict[str, Any]:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.dim_value > 0 else -1 for d in t.shape.dim][1:]
        return {"name": vi.name, "data_type": ONNX_TO_TRITON.get(t.elem_type, "TYPE_FP32"), "dims": dims}

    inputs = [spec(v) for v in graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in graph.output]


def _dims(dims: list[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def config_pbtxt(
    name: str,
    backend: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    max_batch: int,
    dynamic_batching: bool,
    preferred: list[int],
) -> str:
    """The model configuration in protobuf text format (Triton's `ModelConfig` message)."""
    lines = [f'name: "{name}"', f'platform: "{PLATFORMS[backend]}"', f"max_batch_size: {max_batch}", "input ["]
    lines += [",\n".join(
        f'  {{\n    name: "{i["name"]}"\n    data_type: {i["data_type"]}\n    dims: {_dims(i["dims"])}\n  }}'
        for i in inputs)]
    lines += ["]", "output ["]
    outs = []
    for k, o in enumerate(outputs):
        label = '\n    label_filename: "labels.txt"' if k == 0 else ""
        outs.append(f'  {{\n    name: "{o["name"]}"\n    data_type: {o["data_type"]}\n    dims: {_dims(o["dims"])}{label}\n  }}')
    lines += [",\n".join(outs), "]"]
    if backend == "tensorrt":
        lines += ["instance_group [", "  {\n    kind: KIND_GPU\n    count: 1\n  }", "]"]
    if dynamic_batching:
        lines += ["dynamic_batching {", f"  preferred_batch_size: {_dims(preferred)}",
                  "  max_queue_delay_microseconds: 100", "}"]
    return "\n".join(lines) + "\n"


def _artifact(b: Bundle, backend: str, precision: str | None) -> tuple[Path, Path, dict[str, Any]]:
    """(file to serve, ONNX that describes its I/O, manifest entry) for one backend."""
    if backend == "tensorrt":
        order = [precision] if precision else ["fp16", "int8", "fp32"]
        for p in order:
            names = b.find("tensorrt", p)
            if names:
                entry = b.artifacts[names[0]]
                return b.path(names[0]), b.path(entry.get("onnx", "model.onnx")), entry
        raise BundleError(
            f"bundle {b.root} has no TensorRT engine{' for ' + precision if precision else ''}",
            "run `dsedge build BUNDLE` on a GPU of the serving machine's model, or use --backend onnx",
        )
    path = b.require("onnx", precision or "fp32")
    canonical = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}[precision or "fp32"]
    if canonical in b.artifacts:
        path = b.path(canonical)
    return path, path, b.artifacts[path.name]


def export_triton(
    bundle: str | Path,
    repo: str | Path,
    *,
    model_name: str = "dsedge",
    max_batch: int = 32,
    backends: tuple[str, ...] = ("tensorrt", "onnx"),
    dynamic_batching: bool = True,
    precision: str | None = None,
    force: bool = False,
) -> Path:
    """Write the Triton model folder(s) for `bundle` into `repo`; return the repository path.

    A backend whose artifact is missing is skipped when another one is
    available (so the default works on bundles without an engine); when none
    is, the first backend's error is raised.
    """
    unknown = [x for x in backends if x not in PLATFORMS]
    if unknown or not backends:
        raise DsedgeError(f"unknown Triton backend(s) {unknown or backends}", "use tensorrt and/or onnx")
    if max_batch < 1:
        raise DsedgeError(f"max_batch must be >= 1, got {max_batch}")
    b = load_bundle(bundle, verify=True)
    chosen, errors = [], []
    for backend in backends:
        try:
            chosen.append((backend, *_artifact(b, backend, precision)))
        except BundleError as e:
            errors.append(e)
    if not chosen:
        raise errors[0]
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    for k, (backend, artifact, onnx_path, entry) in enumerate(chosen):
        name = model_name if k == 0 else f"{model_name}_{backend}"
        batch = max_batch
        if backend == "tensorrt":
            engine_max = int(entry.get("profile", {}).get("max", [max_batch])[0])
            if max_batch > engine_max:
                raise DsedgeError(
                    f"max_batch {max_batch} exceeds the engine's profile maximum {engine_max}",
                    f"use --max-batch {engine_max} or rebuild the engine with a larger --max-batch",
                )
        inputs, outputs = _io_specs(onnx_path)
        preferred = sorted({min(batch, p) for p in (int(entry.get("profile", {}).get("opt", [8])[0]), batch)})
        text = config_pbtxt(name, backend, inputs, outputs, batch, dynamic_batching, preferred)
        try:
            with atomic_dir(repo / name, force=force) as tmp:
                (tmp / "1").mkdir()
                shutil.copy2(artifact, tmp / "1" / FILES[backend])
                (tmp / "config.pbtxt").write_text(text, encoding="utf-8")
                (tmp / "labels.txt").write_text("\n".join(b.classes) + "\n", encoding="utf-8")
        except FileExistsError as e:
            raise DsedgeError(f"{repo / name} already exists", "pass --force to replace it") from e
    return repo
