"""`export_bundle`: the export stage's one entry point (checkpoint or random init -> bundle folder).

Writes, all-or-nothing through `dsedge.utils.io.atomic_dir`:

    model.onnx        FP32, SimAM as `dsedge::SimAM` calls   kind "onnx" precision "fp32"
    model.fp16.onnx   FP16 inside, FP32 I/O, SimAM in FP32    kind "onnx" precision "fp16"
    model.inline.onnx (--inline-simam) the flat FP32 variant kind "onnx-inline" precision "fp32"
    MODEL_CARD.md     intended use, training summary, metrics, limitations     kind "model-card"
    dsedge.json       manifest (DESIGN §4): model, classes, input/outputs, preprocessing,
                      opset, tool versions, per-artifact sha256, parity against PyTorch,
                      `training` (the checkpoint's metadata summary, for the model card)

`dsedge risk` adds the `clinical` block (temperature, melanoma operating point) later.

Everything that can fail on user input (checkpoint, output folder, data) is
checked before the slow export, and a parity failure aborts before anything
is moved into place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsedge import ISIC2017_CLASSES
from dsedge.bundle import INLINE_FP32, onnx_file
from dsedge.errors import BundleError, CheckpointError, ExportError
from dsedge.export.safety import check_replaceable, seal_facts

if TYPE_CHECKING:
    import onnx

    from dsedge.export.onnx import ExportResult

FP32_FILE = onnx_file("fp32")
FP16_FILE = onnx_file("fp16")
INLINE_FILE = INLINE_FP32.filename


def _check_output(out: Path, force: bool) -> None:
    """Fail early (before a minutes-long export) on an output we cannot or may not write."""
    check_replaceable(out, force)  # --force replaces only a dsedge bundle (dsedge.export.safety)
    if out.exists() and not out.is_dir():
        raise BundleError(f"output {out} exists and is not a folder")
    if out.exists() and not force:
        raise BundleError(f"output folder {out} already exists", "pass --force to replace it")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BundleError(f"cannot write the bundle to {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BundleError(f"cannot write the bundle to {out}: {parent} is not writable")


def _load_source(
    checkpoint: Path | None, model_name: str | None, random_init: bool
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(torch model, checkpoint meta or {}, manifest `model` block)."""
    from dsedge.models.zoo import create_model
    from dsedge.utils.io import sha256_file

    if checkpoint is not None and random_init:
        raise ExportError("give either a checkpoint or --random-init, not both")
    if checkpoint is None:
        if not random_init:
            raise ExportError("no checkpoint given", "pass CHECKPOINT, or --model NAME --random-init")
        name = model_name or "ds_resnet50"
        model = create_model(name, num_classes=len(ISIC2017_CLASSES)).eval()
        return model, {}, {"name": name, "num_classes": len(ISIC2017_CLASSES), "model_kwargs": {},
                           "random_init": True}
    from dsedge.models.checkpoint import checkpoint_paths, load_checkpoint

    model, meta = load_checkpoint(checkpoint, expect_model=model_name)
    weights, _ = checkpoint_paths(checkpoint)
    block = {"name": meta["model"], "num_classes": int(meta["num_classes"]),
             "model_kwargs": dict(meta.get("model_kwargs", {})), "random_init": False,
             "checkpoint": weights.name, "checkpoint_sha256": sha256_file(weights)}
    return model, meta, block


def _model_lambda(model: Any, meta: dict[str, Any]) -> float | None:
    from dsedge.export.onnx import simam_lambdas

    values = sorted(set(simam_lambdas(model).values()))
    if not values:
        return None
    if len(values) > 1:
        raise ExportError(f"the model mixes SimAM lambdas {values}; dsedge records one per model")
    recorded = meta.get("simam_lambda")
    if recorded is not None and abs(float(recorded) - values[0]) > 1e-12 * max(1.0, values[0]):
        raise CheckpointError(
            f"checkpoint metadata says simam_lambda={recorded} but its model_kwargs build SimAM "
            f"with lambda={values[0]}",
            "the checkpoint's .json does not match its weights; re-save it from the training run",
        )
    return values[0]


def _preprocessing(meta: dict[str, Any], model_name: str, image_size: int | None) -> tuple[dict[str, Any], int]:
    from dsedge.config import PreprocessConfig
    from dsedge.models.zoo import get_spec

    if "preprocessing" in meta:
        cfg = PreprocessConfig.from_dict(meta["preprocessing"])
        if image_size is not None and image_size != cfg.crop:
            raise ExportError(
                f"the checkpoint was trained with {cfg.crop}px crops; --image-size {image_size} "
                "would not match its preprocessing",
                "omit --image-size to export at the training size",
            )
        return cfg.to_dict(), cfg.crop
    size = image_size or get_spec(model_name).input_size
    return PreprocessConfig.for_size(size).to_dict(), size


def _resolve_classes(meta: dict[str, Any], model_block: dict[str, Any]) -> list[str]:
    """The checkpoint's class names (ISIC 2017's by default); they must match the model's outputs."""
    classes = list(meta.get("classes") or ISIC2017_CLASSES)
    if len(classes) != model_block["num_classes"]:
        raise CheckpointError(f"checkpoint lists {len(classes)} classes but the model has "
                              f"{model_block['num_classes']} outputs")
    return classes


@dataclass
class _Exported:
    """The ONNX models of one export: FP32 (SimAM as function calls), FP16, and the optional flat FP32."""

    result: ExportResult  # the FP32 model, its opset, the SimAM outlining report
    fp16: onnx.ModelProto
    flat: onnx.ModelProto | None

    def artifacts(self) -> list[tuple[str, onnx.ModelProto, str]]:
        """(file name, model, precision) of every ONNX file, in the order parity and the bundle list them."""
        out = [(FP32_FILE, self.result.model, "fp32"), (FP16_FILE, self.fp16, "fp16")]
        if self.flat is not None:
            out.append((INLINE_FILE, self.flat, "fp32"))
        return out


def _export_models(
    model: Any, size: int, opset: int, probs: bool, cam: bool, inline_simam: bool, say: Callable[[str], None]
) -> _Exported:
    """The slow part: torch -> FP32 ONNX with SimAM outlined, then FP16 and (if asked) the flat variant."""
    from dsedge.export.fp16 import convert_fp16
    from dsedge.export.onnx import export_onnx
    from dsedge.export.simam_function import inline_simam as flatten

    result = export_onnx(model, size, opset=opset, probs=probs, cam=cam)
    say(f"SimAM: {result.outline.calls} dsedge::SimAM calls, {result.outline.nodes_before} -> "
        f"{result.outline.nodes_after} nodes")
    say("converting to FP16")
    fp16 = convert_fp16(result.model)
    flat = flatten(result.model) if inline_simam else None
    return _Exported(result, fp16, flat)


def _output_specs(fp32_model: onnx.ModelProto, n_classes: int, probs: bool, cam: bool) -> list[dict[str, Any]]:
    """The manifest's `outputs`: logits always, softmax and the class-activation map when exported."""
    from dsedge.export.onnx import CAM_NAME, LOGITS_NAME, PROBS_NAME

    outputs = [{"name": LOGITS_NAME, "shape": ["N", n_classes], "dtype": "float32"}]
    if probs:
        outputs.append({"name": PROBS_NAME, "shape": ["N", n_classes], "dtype": "float32",
                        "op": "softmax(logits, axis=1)"})
    if cam:
        dims = next(o.type.tensor_type.shape.dim for o in fp32_model.graph.output if o.name == CAM_NAME)
        outputs.append({"name": CAM_NAME, "shape": ["N", n_classes, dims[2].dim_value, dims[3].dim_value],
                        "dtype": "float32", "op": "Conv1x1(last features, fc weight, fc bias); "
                        "spatial mean = logits (class activation map)"})
    return outputs


def _build_manifest(
    model_block: dict[str, Any],
    classes: list[str],
    preprocessing: dict[str, Any],
    size: int,
    meta: dict[str, Any],
    exported: _Exported,
    outputs: list[dict[str, Any]],
    parity: Any,
    t0: float,
) -> dict[str, Any]:
    """The manifest before any artifact is listed: model, I/O, SimAM outlining, training, tools, parity."""
    from dsedge.bundle import new_manifest
    from dsedge.export.manifest import tool_versions
    from dsedge.export.model_card import training_summary
    from dsedge.export.simam_function import DOMAIN, FUNCTION_NAME
    from dsedge.runtime.contract import preprocessing_contract

    result = exported.result
    input_spec = {"name": "input", "shape": ["N", 3, size, size], "dtype": "float32", "layout": "NCHW"}
    manifest = new_manifest(model_block, classes, input_spec, preprocessing)
    manifest.update({
        "outputs": outputs,
        "opset": result.opset,
        "simam": {
            "op": f"{DOMAIN}::{FUNCTION_NAME}", "calls": result.outline.calls,
            "nodes_before_outlining": result.outline.nodes_before,
            "nodes_after_outlining": result.outline.nodes_after,
        },
        "preprocessing_contract": preprocessing_contract(preprocessing),  # the exact algorithm (issue 23)
        "training": training_summary(meta),
        "tools": tool_versions(),
        "parity": parity,
        "export": {"seconds": round(time.perf_counter() - t0, 2),
                   "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    })
    return manifest


def _write_bundle(out: Path, force: bool, exported: _Exported, manifest: dict[str, Any]) -> None:
    """Write every file into a temp folder, prove it loads, then move it to `out` in one rename.

    Filesystem errors become `BundleError`s naming `out`; on any failure nothing is left there.
    """
    from dsedge.bundle import add_artifact, load_bundle, write_manifest
    from dsedge.export.model_card import MODEL_CARD_FILE, render_model_card
    from dsedge.export.onnx import save_onnx
    from dsedge.export.vectors import write_vectors
    from dsedge.utils.io import atomic_dir

    opset = exported.result.opset
    try:
        with atomic_dir(out, force=force) as tmp:
            save_onnx(exported.result.model, tmp / FP32_FILE)
            add_artifact(manifest, tmp, FP32_FILE, "onnx", "fp32", simam="function", opset=opset)
            save_onnx(exported.fp16, tmp / FP16_FILE)
            add_artifact(manifest, tmp, FP16_FILE, "onnx", "fp16", simam="function", opset=opset,
                         io_dtype="float32", simam_dtype="float32")
            if exported.flat is not None:
                save_onnx(exported.flat, tmp / INLINE_FILE)
                add_artifact(manifest, tmp, INLINE_FILE, "onnx-inline", "fp32", simam="inline", opset=opset)
            (tmp / MODEL_CARD_FILE).write_text(render_model_card(manifest), encoding="utf-8")
            add_artifact(manifest, tmp, MODEL_CARD_FILE, "model-card", "n/a")
            write_manifest(tmp, manifest)  # sealed (DESIGN §5)
            write_vectors(tmp)  # golden vectors (vectors/), inside the all-or-nothing write
            load_bundle(tmp, verify=True)  # prove the folder reads back before it goes live
    except FileExistsError:
        raise BundleError(f"output folder {out} already exists", "pass --force to replace it") from None
    except OSError as e:
        raise BundleError(f"cannot write the bundle to {out}: {e.strerror or e}") from e


def export_bundle(
    checkpoint: Path | None,
    out: Path,
    *,
    model_name: str | None = None,
    random_init: bool = False,
    image_size: int | None = None,
    data: Path | None = None,
    split: str = "val",
    parity_images: int = 150,
    probs: bool = False,
    cam: bool = False,
    inline_simam: bool = False,
    force: bool = False,
    opset: int = 18,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Export a checkpoint (or a random-init registry model) to a verified bundle folder; returns it.

    `data`/`split`/`parity_images` choose the parity inputs (real images, else a
    random batch); `probs` adds a softmax output; `cam` adds the class-activation-map
    output `cam` (heat-maps from the engine itself); `inline_simam` also writes the
    flat `model.inline.onnx`. Raises `ExportError`/`CheckpointError`/`BundleError`
    with a clear message; on any failure nothing is left at `out`.
    """
    from dsedge.export.manifest import measure_parity, parity_inputs

    say = progress or (lambda _msg: None)
    out = Path(out)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    # everything that can fail on user input is checked before the slow export
    _check_output(out, force)
    if data is not None and not Path(data).exists():
        raise ExportError(f"parity data not found: {data}")
    model, meta, model_block = _load_source(checkpoint, model_name, random_init)
    model_block["simam_lambda"] = _model_lambda(model, meta)
    classes = _resolve_classes(meta, model_block)
    preprocessing, size = _preprocessing(meta, model_block["name"], image_size)
    inputs = parity_inputs(Path(data) if data else None, split, parity_images, preprocessing, size)

    t0 = time.perf_counter()
    say(f"exporting {model_block['name']} at {size}x{size} (opset {opset})")
    exported = _export_models(model, size, opset, probs, cam, inline_simam, say)
    parity = measure_parity(model, exported.artifacts(), inputs, progress=say)  # raises before any write
    outputs = _output_specs(exported.result.model, len(classes), probs, cam)
    manifest = _build_manifest(model_block, classes, preprocessing, size, meta, exported, outputs, parity, t0)
    # classes, preprocessing, lambda, input into each ONNX
    seal_facts((exported.result.model, exported.fp16, exported.flat), manifest)
    _write_bundle(out, force, exported, manifest)
    say(f"bundle written to {out}")
    return out
