"""Classify images with a bundle: the one entry point a device application needs (torch-free).

`Predictor` loads and verifies a bundle (every artifact's sha256), picks the engine
(`dsedge.runtime.backends`, through the engine registry: TensorRT built for this GPU, else ONNX Runtime;
OpenVINO or any other registered runtime backend on request)
and turns each image into one result a device UI can act on:

1. input quality first (`dsedge.runtime.quality`): size and aspect ratio from the file header
   (a 1x12000 PNG is never decoded), then brightness, contrast and blur on the pixels; EXIF
   orientation and ICC profiles are applied by loading. A failed check gives
   `decision: "cannot assess"` and the model is not run on that image.
2. the engine on a batch of the images that passed; logits -> calibrated probabilities,
   melanoma risk, decision ("refer" / benign class) and `uncertain` (`dsedge.runtime.decision`).
3. an optional class-activation-map overlay of the decided class (MEL for "refer", else the benign
   class shown), from the engine's own `cam` output, drawn on the full image with a colour bar;
   the raw map goes into the result (`cam`), with a warning when its peak sits on a sticker or
   the image border (`dsedge.runtime.heatmap`). The heat-map folder is checked before inference.

One bad file (missing, corrupt, a broken symbolic link) yields an entry with `error` for that file; the batch goes on.
Every result names the model, its version and the bundle's sha256 (of `dsedge.json`, which
holds the sha256 of every artifact).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dsedge.bundle import Bundle, load_bundle
from dsedge.errors import BundleError, DataError
from dsedge.runtime.backends import PRECISIONS, all_outputs, backend_choices, select_runner
from dsedge.runtime.decision import REFER, DecisionPolicy, cannot_assess
from dsedge.runtime.heatmap import CAM_OUTPUT, cam_report, write_overlay
from dsedge.runtime.preprocess import preprocess_image
from dsedge.runtime.quality import QualityReport, QualityThresholds, assess, assess_size
from dsedge.utils.images import LoadedImage, load_image

__all__ = ["PRECISIONS", "Predictor", "backend_choices", "check_output_folder", "predict"]


def check_output_folder(folder: Path) -> None:
    """Create `folder` (heat-maps go there) or say in one line why it cannot be used."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--heatmaps {folder} is a file, not a folder", "pass a folder path (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the heat-map folder {folder}: {e.strerror or e}",
                        "pass a folder path you can write to") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"cannot write to the heat-map folder {folder}: permission denied",
                        "pass a folder path you can write to")


@dataclass
class _Item:
    """One image on its way through the predictor."""

    name: str
    result: dict[str, Any]
    image: Image.Image | None = None
    tensor: np.ndarray | None = None


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
        quality_checks: bool = True,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=True)
        self.classes = self.bundle.classes
        self.preprocessing = self.bundle.preprocessing
        self.policy = DecisionPolicy.from_manifest(self.bundle)
        self.thresholds = QualityThresholds.from_dict(self.bundle.clinical.get("quality"))
        self.quality_checks = quality_checks
        outputs = self.bundle.outputs or [{}]
        self.output_name: str | None = outputs[0].get("name")
        self.has_cam = any(o.get("name") == CAM_OUTPUT for o in outputs)
        self.runner, self.fallback_reason = select_runner(
            self.bundle, backend, precision, device=device, providers=providers, threads=threads,
            cuda_graph=cuda_graph, output=self.output_name)
        self.identity = self._identity()
        self._drawing = False

    def _identity(self) -> dict[str, Any]:
        model = self.bundle.model
        version = model.get("version") or (
            f"sha256:{model['checkpoint_sha256'][:12]}" if model.get("checkpoint_sha256") else "random-init")
        return {"model": model.get("name"), "model_version": version, "bundle_sha256": self.bundle.sha256}

    @property
    def info(self):  # noqa: ANN201 - RunnerInfo
        return self.runner.info

    # -- inference -----------------------------------------------------------------------------

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed N x 3 x H x W float32 -> every engine output ("logits", "cam" if exported)."""
        outs = all_outputs(self.runner, batch, self.output_name)
        logits = outs["logits"]
        if logits.ndim != 2 or logits.shape[1] != len(self.classes):
            raise BundleError(
                f"the model returns shape {tuple(logits.shape)} but the manifest lists "
                f"{len(self.classes)} classes ({', '.join(self.classes)})",
                "re-export the bundle",
            )
        return outs

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed batch -> N x classes calibrated probabilities."""
        return self.policy.probabilities(self.infer(batch)["logits"]).astype(np.float32)

    def _prepare(self, name: str, loaded: LoadedImage | None, error: str | None = None) -> _Item:
        base = {"image": name, **self.identity}
        if error is not None:
            return _Item(name, {**base, "error": error, "quality": None, **cannot_assess(["error"])})
        assert loaded is not None
        report = assess(loaded.image, self.thresholds) if self.quality_checks else QualityReport({})
        if loaded.exif_transposed:
            report.notes.append("exif orientation applied")
        if loaded.icc_converted:
            report.notes.append("icc profile converted to sRGB")
        # keep the decoded pixels only when a heat-map will be drawn on them (a 12 MP image is 36 MB)
        keep = loaded.image if self._drawing else None
        item = _Item(name, {**base, "error": None, "quality": report.to_dict()}, keep)
        if not report.ok:
            item.result.update(cannot_assess(report.flags))
            return item
        try:
            item.tensor = preprocess_image(loaded.image, self.preprocessing)
        except DataError as e:
            item.result.update(error=e.message, **cannot_assess(["error"]))
        return item

    def _load(self, path: Path) -> _Item:
        """Header geometry first (no decode of a too-small or too-thin file), then the pixels."""
        if path.is_symlink() and not path.exists():
            return self._prepare(str(path), None, error=f"broken symbolic link: {path} -> {os.readlink(path)}")
        if self.quality_checks:
            try:
                with Image.open(path) as img:
                    size = img.size
            except Exception:  # noqa: BLE001 - load_image below names the real problem
                size = None
            if size is not None:
                report = assess_size(*size, self.thresholds)
                if not report.ok:
                    base = {"image": str(path), **self.identity, "error": None, "quality": report.to_dict()}
                    return _Item(str(path), {**base, **cannot_assess(report.flags)})
        try:
            return self._prepare(str(path), load_image(path))
        except DataError as e:
            return self._prepare(str(path), None, error=e.message)

    def _run(self, items: list[_Item], heatmaps: Path | None) -> list[dict[str, Any]]:
        ready = [it for it in items if it.tensor is not None]
        if ready:
            outs = self.infer(np.stack([it.tensor for it in ready]))
            probs = self.policy.probabilities(outs["logits"])
            cams = outs.get(CAM_OUTPUT)
            for i, (it, p) in enumerate(zip(ready, probs, strict=True)):
                top = int(np.argmax(p))
                it.result.update({
                    "probabilities": {c: float(v) for c, v in zip(self.classes, p, strict=True)},
                    "top_class": self.classes[top],
                    "top_probability": float(p[top]),
                    "reasons": [],
                    **self.policy.decide(p),
                })
                if heatmaps is not None and cams is not None and it.image is not None:
                    self._draw(it, cams[i], top, heatmaps)
        for it in items:
            it.result.setdefault("probabilities", None)
            it.result.setdefault("top_class", None)
            it.result.setdefault("top_probability", None)
            it.image = it.tensor = None
        return [it.result for it in items]

    def _draw(self, it: _Item, cams: np.ndarray, top: int, heatmaps: Path) -> None:
        """Overlay PNG of the shown class on the full image, and its raw map (+ artefact warnings) in the result."""
        shown = self._heatmap_class(it.result["decision"], top)
        name = self.classes[shown]
        assert it.image is not None
        target = heatmaps / f"{Path(it.name).stem}.{name}.cam.png"
        it.result["heatmap"] = str(write_overlay(target, it.image, cams[shown], self.preprocessing, label=name))
        it.result["cam"] = cam_report(it.image, cams[shown], self.preprocessing, name)
        it.result["reasons"] = [*it.result.get("reasons", []), *it.result["cam"]["warnings"]]

    def _heatmap_class(self, decision: str, top: int) -> int:
        """The class whose map is drawn: the decided one (MEL for "refer"), so the picture explains the decision."""
        if decision == REFER and self.policy.melanoma_class in self.classes:
            return self.classes.index(self.policy.melanoma_class)
        return self.classes.index(decision) if decision in self.classes else top

    def predict(self, paths: Sequence[str | Path], batch_size: int | None = None,
                heatmaps: str | Path | None = None) -> list[dict[str, Any]]:
        """Classify image files: one result per path, in order (see the module docstring)."""
        self._check_heatmaps(heatmaps)
        self._drawing = heatmaps is not None
        size = batch_size or min(self.runner.max_batch or 16, 16)
        out_dir = Path(heatmaps) if heatmaps is not None else None
        results: list[dict[str, Any]] = []
        paths = [Path(p) for p in paths]
        for i in range(0, len(paths), size):
            results += self._run([self._load(p) for p in paths[i:i + size]], out_dir)
        return results

    def predict_images(self, images: Sequence[Image.Image], names: Sequence[str] | None = None,
                       heatmaps: str | Path | None = None) -> list[dict[str, Any]]:
        """Classify in-memory PIL images (camera frames) instead of files."""
        self._check_heatmaps(heatmaps)
        self._drawing = heatmaps is not None
        labels = list(names) if names else [f"image{i}" for i in range(len(images))]
        items = [self._prepare(n, LoadedImage(img.convert("RGB"), img.size)) for n, img in zip(labels, images, strict=True)]
        return self._run(items, Path(heatmaps) if heatmaps is not None else None) if items else []

    def _check_heatmaps(self, heatmaps: str | Path | None) -> None:
        """Refuse a heat-map folder that cannot be used before any image is classified, not after."""
        if heatmaps is None:
            return
        if not self.has_cam:
            raise BundleError(f"bundle {self.bundle.root} has no `cam` output, so it cannot draw heat-maps",
                              "re-export with `dsedge export ... --cam`")
        check_output_folder(Path(heatmaps))

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
    quality_checks: bool = True,
) -> list[dict[str, Any]]:
    """One-shot convenience: load the bundle, classify `images`, release the runner."""
    with Predictor(bundle, backend=backend, precision=precision, quality_checks=quality_checks) as p:
        return p.predict(images, batch_size=batch_size)
