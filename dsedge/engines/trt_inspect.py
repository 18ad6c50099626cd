"""What precision each layer of a built engine really runs in, from TensorRT's engine inspector.

Under strong typing a layer runs in the type the ONNX gives it, so an INT8
engine built from a Q/DQ model derived from the FP32 graph runs every
unquantized layer (SimAM, kept-float groups) in FP32 — silently slower than
intended. Asking the builder for `ProfilingVerbosity.DETAILED` makes the plan
carry per-layer tensor formats; `IEngineInspector.get_engine_information(JSON)`
returns them, and `summarize_layers` counts layers per precision so the
manifest records what the engine does, not what we asked for.

The inspector spells a tensor's type as one "Format/Datatype" field
("Row major linear FP16 format", "Half") in TensorRT 10; TensorRT 11's tooling
(NVIDIA's trt-perf-analysis schema in release 11.1) reads it split into
"Format" and "Datatype". We read "Format/Datatype", else "Datatype", else
"Format", so neither spelling turns every layer into "other" — which would make
the INT8 layer-precision check in `trt_build` silently never warn. A detailed
report in which no layer has a readable type says so (`unreadable`).

`summarize_layers` and `layer_precision` are pure functions over the
inspector's JSON (tested without TensorRT); `inspect_plan` needs TensorRT and
the GPU the plan was built on.
"""

from __future__ import annotations

import json
from typing import Any

#: narrowest first: a layer "runs in" the narrowest float/int8 type among its inputs
_ORDER = ("INT8", "FP8", "FP16", "BF16", "FP32")
#: layers that only move data between formats; not counted
_SKIP_TYPES = {"Reformat", "NoOp"}
MAX_NAMES = 40


def datatype_of(text: str) -> str | None:
    """Precision named by an inspector "Format/Datatype" string ("Half", "Row major linear FP16 format", "Int8", ...).

    Integer index types (Int32, Int64, Bool) return None: they say nothing about compute precision.
    """
    t = str(text).lower()
    if "int8" in t:
        return "INT8"
    if "fp8" in t:
        return "FP8"
    if "bf16" in t or "bfloat" in t:
        return "BF16"
    if "fp16" in t or "half" in t:
        return "FP16"
    if "fp32" in t or "float" in t:
        return "FP32"
    return None


#: where a tensor's type may be written, most specific first (10.x: one field; 11.x: split)
TYPE_FIELDS = ("Format/Datatype", "Datatype", "Format")


def tensor_precision(tensor: dict[str, Any]) -> str | None:
    """Precision of one inspector tensor entry, from whichever of `TYPE_FIELDS` names one."""
    for key in TYPE_FIELDS:
        found = datatype_of(tensor.get(key, ""))
        if found:
            return found
    return None


def layer_precision(layer: dict[str, Any]) -> str | None:
    """The narrowest precision among a layer's inputs (its outputs if no input says), or None."""
    for side in ("Inputs", "Outputs"):
        found = {tensor_precision(t) for t in layer.get(side, []) if isinstance(t, dict)}
        found.discard(None)
        if found:
            return min(found, key=_ORDER.index)
    return None


def summarize_layers(info: dict[str, Any]) -> dict[str, Any]:
    """{"detailed", "counts": {precision: n}, "fp32_layers": [names...], "fp32_layer_count"} from inspector JSON."""
    layers = info.get("Layers", [])
    if any(not isinstance(layer, dict) for layer in layers):  # names only: built without DETAILED verbosity
        return {"detailed": False, "layers": len(layers)}
    counts: dict[str, int] = {}
    fp32: list[str] = []
    for layer in layers:
        if layer.get("LayerType") in _SKIP_TYPES:
            continue
        precision = layer_precision(layer) or "other"
        counts[precision] = counts.get(precision, 0) + 1
        if precision == "FP32":
            fp32.append(str(layer.get("Name", "?")))
    summary = {"detailed": True, "counts": dict(sorted(counts.items())), "fp32_layers": fp32[:MAX_NAMES],
               "fp32_layer_count": len(fp32)}
    if counts and set(counts) == {"other"}:  # detailed, yet no layer's type could be read: say so
        summary["unreadable"] = True
    return summary


def inspect_plan(trt: Any, logger: Any, plan: bytes, host_code_allowed: bool = False) -> dict[str, Any] | None:
    """Deserialize `plan` on the current device and summarize its layers; None if TensorRT cannot."""
    runtime = trt.Runtime(logger)
    if host_code_allowed:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        return None
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return summarize_layers(json.loads(text))
