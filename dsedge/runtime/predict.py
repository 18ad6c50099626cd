"""Classify images with a bundle: the one entry point a device application needs (torch-free).

`Predictor` loads and verifies a bundle (every artifact's sha256), picks the
best runner available on this machine — a TensorRT engine built for this
TensorRT version and GPU when `tensorrt` and `cuda-python` import, else ONNX
Runtime with its best execution provider — preprocesses images with the
NumPy/Pillow twin of the training-eval transform, and returns class
probabilities with the manifest's class names. Why TensorRT was not used (no
package, no engine, an engine for another GPU) is kept in `fallback_reason`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dsedge.engines.base import Runner, RunnerInfo, softmax
from dsedge.errors import BundleError, DsedgeError, EngineError
from dsedge.runtime.bundle import Bundle, load_bundle
from dsedge.runtime.preprocess import preprocess_files, preprocess_image

BACKENDS = ("auto", "tensorrt", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")
# Preference when no precision is asked for: TensorRT engines are built for speed (fp16 first);
# ONNX Runtime on a CPU computes FP16 in FP32 anyway, so the FP32 model is its best choice.
TRT_ORDER = ("fp16", "int8", "fp32")
ORT_ORDER = ("fp32", "fp16", "int8")


def _check_choice(value: str | None, allowed: Sequence[str], what: str) -> None:
    if value is not None and value not in allowed:
        raise DsedgeError(f"unknown {what} {value!r}", f"use one of: {', '.join(allowed)}")


class Predictor:
    """A verified bundle + the best runner for it; `predict(paths)` returns one dict per image."""

    def __init__(
        self,
        bundle: str | Path | Bundle,
        backend: str = "auto",
        precision: str | None = None,
        *,
        device: int = 0,
        providers: str | list[str] = "auto",
        threads: int | None = None,
        cuda_graph: bool = False,
    ) -> None:
        _check_choice(backend, BACKENDS, "backend")
        _check_choice(precision, PRECISIONS, "precision")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=True)
        self.classes = self.bundle.classes
        self.preprocessing = self.bundle.preprocessing
        self.fallback_reason: str | None = None
        # the logits output, by name: a bundle exported with `--probs` has a second (softmax) output
        outputs = self.bundle.manifest.get("outputs") or [{}]
        self.output_name: str | None = outputs[0].get("name")
        self.runner: Runner = self._select(backend, precision, device, providers, threads, cuda_graph)

    # -- runner choice -------------------------------------------------------------------------

    def _select(
        self, backend: str, precision: str | None, device: int, providers: Any, threads: int | None, graph: bool
    ) -> Runner:
        if backend in ("auto", "tensorrt"):
            try:
                return self._tensorrt(precision, device, graph)
            except DsedgeError as e:
                if backend == "tensorrt":
                    raise
                self.fallback_reason = e.message
        return self._onnxruntime(precision, providers, threads)

    def _tensorrt(self, precision: str | None, device: int, graph: bool) -> Runner:
        if not self.bundle.find("tensorrt", precision):
            raise BundleError(
                f"bundle {self.bundle.root} has no TensorRT engine"
                + (f" for {precision}" if precision else ""),
                "run `dsedge build BUNDLE --precision ...` on this device",
            )
        from dsedge.engines.trt_runner import (
            TrtRunner,  # imports tensorrt lazily, raises if missing
        )

        order = [precision] if precision else [p for p in TRT_ORDER if self.bundle.find("tensorrt", p)]
        errors = []
        for p in order:
            try:
                return TrtRunner.from_bundle(self.bundle, p, device=device, cuda_graph=graph, output=self.output_name)
            except EngineError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise EngineError("; ".join(e.message for e in errors), errors[0].hint)

    def _onnxruntime(self, precision: str | None, providers: Any, threads: int | None) -> Runner:
        from dsedge.engines.ort_runner import OrtRunner

        if precision is None:
            precision = next((p for p in ORT_ORDER if self.bundle.find("onnx", p)), "fp32")
        names = self.bundle.find("onnx", precision)
        if not names:
            self.bundle.require("onnx", precision)  # raises a BundleError that lists what the bundle has
        canonical = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}[precision]
        path = self.bundle.path(canonical if canonical in names else names[0])
        return OrtRunner(path, precision, providers=providers, threads=threads, output=self.output_name)

    # -- inference -----------------------------------------------------------------------------

    @property
    def info(self) -> RunnerInfo:
        return self.runner.info

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed N x 3 x H x W float32 -> N x classes probabilities."""
        logits = self.runner.infer(batch)
        if logits.ndim != 2 or logits.shape[1] != len(self.classes):
            raise BundleError(
                f"the model returns shape {tuple(logits.shape)} but the manifest lists "
                f"{len(self.classes)} classes ({', '.join(self.classes)})",
                "re-export the bundle",
            )
        return softmax(logits)

    def _results(self, names: Sequence[str], probs: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for name, p in zip(names, probs, strict=True):
            top = int(np.argmax(p))
            out.append(
                {
                    "image": name,
                    "probabilities": {c: float(v) for c, v in zip(self.classes, p, strict=True)},
                    "top_class": self.classes[top],
                    "top_probability": float(p[top]),
                }
            )
        return out

    def predict(self, paths: Sequence[str | Path], batch_size: int | None = None) -> list[dict[str, Any]]:
        """Classify image files: [{"image", "probabilities": {class: p}, "top_class", "top_probability"}]."""
        paths = [Path(p) for p in paths]
        if not paths:
            return []
        size = batch_size or min(self.runner.max_batch or 16, 16)
        results: list[dict[str, Any]] = []
        for i in range(0, len(paths), size):
            chunk = paths[i : i + size]
            probs = self.predict_batch(preprocess_files(chunk, self.preprocessing))
            results += self._results([str(p) for p in chunk], probs)
        return results

    def predict_images(self, images: Sequence[Image.Image], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Classify in-memory RGB PIL images (camera frames) instead of files."""
        if not images:
            return []
        batch = np.stack([preprocess_image(img.convert("RGB"), self.preprocessing) for img in images])
        labels = list(names) if names else [f"image{i}" for i in range(len(images))]
        return self._results(labels, self.predict_batch(batch))

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def predict(
    bundle: str | Path,
    images: Sequence[str | Path],
    *,
    backend: str = "auto",
    precision: str | None = None,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """One-shot convenience: load the bundle, classify `images`, release the runner."""
    with Predictor(bundle, backend=backend, precision=precision) as p:
        return p.predict(images, batch_size=batch_size)
