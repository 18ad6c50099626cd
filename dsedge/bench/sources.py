"""Where the bench's weights and artifacts come from, and what the report must say about them.

A given bundle (with, optionally, the checkpoint it was exported from), or the
embedded default job: the shipped reference DS-ResNet50
(`dsedge.models.weights.reference_checkpoint()`) when this install has it, else
a seeded random-init one — exported with `dsedge.export` and INT8-calibrated
with `dsedge.calibration` (on the data when there is some, else on synthetic
images), so the PyTorch rows and the artifacts share weights and the report
says which weights and which calibration data they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsedge import ISIC2017_CLASSES, SIMAM_LAMBDA
from dsedge.bench.progress import BenchProgress
from dsedge.errors import DsedgeError

CALIBRATION_IMAGES = 256  # real images for the default job's INT8 (synthetic: 16)


@dataclass
class Source:
    """The bundle, the matching checkpoint, and the notes the report must carry."""

    bundle: Any  # dsedge.bundle.Bundle
    checkpoint: Path | None
    description: str
    image_size: int
    preprocessing: dict[str, Any]
    classes: list[str]
    random_weights: bool
    torch_matches_bundle: bool
    notes: list[str] = field(default_factory=list)


def shipped_checkpoint() -> Path | None:
    """The reference checkpoint shipped with dsedge, or None (not in this install / not trained yet)."""
    try:
        from dsedge.models.weights import reference_checkpoint
    except ImportError:
        return None
    path = reference_checkpoint()
    return Path(path) if path is not None else None


def bundle_source(bundle_path: Path, checkpoint: Path | None) -> Source:
    from dsedge.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    size = bundle.input_size
    model = bundle.model
    random_init = bool(model.get("random_init"))
    notes = []
    if checkpoint is not None:
        check_checkpoint(checkpoint, model.get("checkpoint_sha256"))
    else:
        notes.append("no --checkpoint: PyTorch rows use random weights (latency only; agreement is "
                     "measured against ONNX Runtime FP32)")
    desc = f"bundle {bundle.root}" + (f" + checkpoint {checkpoint}" if checkpoint else "")
    if random_init:
        desc += " (random-init weights)"
    return Source(bundle, checkpoint, desc, size, bundle.preprocessing, bundle.classes,
                  random_weights=random_init or checkpoint is None,
                  torch_matches_bundle=checkpoint is not None, notes=notes)


def check_checkpoint(checkpoint: Path, expected_sha: str | None) -> None:
    """The PyTorch rows must use the weights the bundle was exported from, or agreement means nothing."""
    from dsedge.models.checkpoint import checkpoint_paths
    from dsedge.utils.io import sha256_file

    weights, _ = checkpoint_paths(checkpoint)
    if not weights.is_file():
        raise DsedgeError(f"checkpoint not found: {weights}")
    if expected_sha and sha256_file(weights) != expected_sha:
        raise DsedgeError(
            f"{weights} is not the checkpoint this bundle was exported from (sha256 differs from the manifest)",
            "pass the checkpoint given to `dsedge export`, or leave --checkpoint out",
        )


def _random_checkpoint(workdir: Path, image_size: int, seed: int) -> Path:
    import torch

    from dsedge.config import PreprocessConfig
    from dsedge.models.checkpoint import save_checkpoint
    from dsedge.models.zoo import create_model

    pre = PreprocessConfig.for_size(image_size).to_dict()
    torch.manual_seed(seed)
    model = create_model("ds_resnet50", 3)
    return save_checkpoint(workdir / "random_init", model, {
        "model": "ds_resnet50", "classes": list(ISIC2017_CLASSES), "preprocessing": pre, "simam_lambda": SIMAM_LAMBDA,
        "model_kwargs": {}, "random_init": True, "seed": seed,
    })


def _calibration_count(data: Path | None) -> int:
    """Images for the default job's INT8: up to CALIBRATION_IMAGES of the training split, else 16 synthetic."""
    if data is None:
        return 16
    from dsedge.data import load_split

    return min(CALIBRATION_IMAGES, len(load_split(Path(data), "train").samples))


def default_source(workdir: Path, image_size: int, progress: BenchProgress, data: Path | None = None,
                   seed: int = 0) -> Source:
    """The embedded default job: shipped (else random-init) DS-ResNet50 -> bundle -> INT8."""
    from dsedge.bundle import load_bundle
    from dsedge.calibration.int8 import calibrate_bundle
    from dsedge.export import export_bundle

    shipped = shipped_checkpoint()
    notes: list[str] = []
    if shipped is not None:
        ckpt, size = shipped, None  # the shipped model's own input size
        desc = f"shipped reference DS-ResNet50 ({shipped.name})"
    else:
        ckpt, size = _random_checkpoint(workdir, image_size, seed), image_size
        desc = f"random-init DS-ResNet50 (seed {seed}; this install ships no trained weights)"
        notes.append("random weights: no trained model is shipped with this install, so latency only means "
                     "something; accuracy would be chance level")
    with progress.phase(f"exporting {ckpt.name} to ONNX / FP16 (parity checked)") as phase:
        bpath = export_bundle(ckpt, workdir / "bundle", image_size=size, parity_images=4, progress=phase.note)
    n = _calibration_count(data)
    calib = f"{n} training images of {data}" if data is not None else f"{n} synthetic images"
    with progress.phase(f"calibrating INT8 on {calib}", total=n) as phase:
        if data is not None:
            calibrate_bundle(bpath, data, num_images=n, sensitivity=False, max_acc_drop=100.0, on_images=phase,
                             on_step=phase.note)
        else:
            calibrate_bundle(bpath, None, synthetic=True, num_images=n, sensitivity=False, on_images=phase,
                             on_step=phase.note)
    bundle = load_bundle(bpath)
    actual = bundle.input_size
    desc += f", {actual}x{actual} inputs; INT8 calibrated on {calib}"
    return Source(bundle, ckpt, desc, actual, bundle.preprocessing, bundle.classes,
                  random_weights=shipped is None, torch_matches_bundle=True, notes=notes)
