"""`write_vectors`: the golden vectors every bundle carries (`vectors/`, read by `dsedge.runtime.vectors`).

Three JPEGs are generated, not shipped (no ISIC image may leave the data folder): a 12-megapixel
"full-size" dermatoscope frame, an odd-aspect image stored rotated with EXIF orientation 6 and
sized so its centre crop offset is a rounding tie (x.5, where half-to-even and half-up differ),
and a grayscale one. They exercise the steps of the preprocessing contract an independent
implementation gets wrong first: the antialiased downscale of a large frame, orientation, crop
rounding and gray -> RGB. For each, the reference input tensor, and for every ONNX artifact of
the bundle the logits, calibrated probabilities (the bundle's `clinical` temperature when fitted)
and decisions, computed by ONNX Runtime on the CPU.

Export calls it last, inside the bundle's atomic write; `dsedge calibrate` / `dsedge risk` re-run
it after they change an artifact or the policy (vectors name the artifact sha256s and policy they
were made with, so stale ones are reported by `dsedge predict --check-vectors`). Torch-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dsedge.bundle import Bundle, load_bundle
from dsedge.runtime.contract import CONTRACT_VERSION, TENSOR_TOLERANCE
from dsedge.runtime.decision import DecisionPolicy
from dsedge.runtime.vectors import (
    FORMAT,
    FORMAT_VERSION,
    LOGIT_TOLERANCE,
    VECTORS_DIR,
    artifact_stem,
    image_tensor,
    logits_name,
    model_answers,
    onnx_artifacts,
    reference_runner,
    write_index,
)
from dsedge.utils.io import atomic_dir, sha256_file

FULL_SIZE = (4000, 3000)  # a 12 MP frame, the size a phone-attached dermatoscope delivers
ODD_SHORT_SIDE = 517
GRAY_SIZE = (701, 467)
JPEG_QUALITY = 90
EXIF_ROTATE_90_CW = 6  # stored rotated: the loader must turn it back


def _lesion(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth, deterministic skin-and-lesion picture (H x W x 3 uint8): an irregular brown
    ellipse with texture on a skin-tone gradient, so the model sees something lesion-like and
    the JPEG stays small (no per-pixel noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (x - width / 2) / (0.32 * width), (y - height / 2) / (0.30 * height)
    angle = np.arctan2(v, u)
    wobble = 1 + 0.12 * np.sin(3 * angle + rng.uniform(0, 6)) + 0.06 * np.sin(7 * angle + rng.uniform(0, 6))
    inside = np.clip((wobble - np.sqrt(u * u + v * v)) * 6, 0, 1)  # soft edge
    texture = np.sin(x / (width / 97)) * np.cos(y / (height / 61)) + 0.5 * np.sin((x + 2 * y) / (width / 211))
    skin = np.stack([205 + 20 * y / height, 160 + 15 * x / width, 135 + 0 * x], axis=-1)
    lesion = np.stack([110 + 18 * texture, 70 + 12 * texture, 50 + 8 * texture], axis=-1)
    img = skin * (1 - inside[..., None]) + lesion * inside[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=4)
def _jpeg(width: int, height: int, seed: int, mode: str, orientation: int) -> bytes:
    """JPEG bytes of one generated image (cached: every export writes the same 12 MP frame)."""
    # drawn at a quarter of the size and enlarged by Pillow: a 12 MP frame in 0.2 s instead of 4 s
    small = Image.fromarray(_lesion(max(1, width // 4), max(1, height // 4), seed))
    img = small.resize((width, height), Image.Resampling.BICUBIC).convert(mode)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
        img = img.transpose(Image.Transpose.ROTATE_90)  # stored 90 degrees counter-clockwise of upright
    buf = BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, exif=exif.tobytes())
    return buf.getvalue()


def tie_width(resize: int, crop: int, height: int = ODD_SHORT_SIDE) -> int:
    """An upright width near 2.3 x `height` whose resized width w makes (w - crop) / 2 = 2k + 0.5, a tie
    that Python's half-to-even rounding and a naive half-up rounding resolve differently."""
    for width in range(int(2.3 * height), int(2.6 * height)):
        w = int(resize * width / height)
        if (w - crop) % 4 == 1:
            return width
    return int(2.3 * height)


def image_specs(preprocessing: dict[str, Any]) -> list[dict[str, Any]]:
    """The three vector images: name, upright size, mode, EXIF orientation, what each one tests."""
    odd = tie_width(int(preprocessing["resize"]), int(preprocessing["crop"]))
    return [
        {"name": "fullsize", "size": FULL_SIZE, "mode": "RGB", "orientation": 1, "seed": 1,
         "tests": "antialiased downscale of a 12 MP frame"},
        {"name": "odd_aspect", "size": (odd, ODD_SHORT_SIDE), "mode": "RGB", "orientation": EXIF_ROTATE_90_CW,
         "seed": 2, "tests": "EXIF orientation 6, odd aspect ratio, half-to-even crop offset"},
        {"name": "grayscale", "size": GRAY_SIZE, "mode": "L", "orientation": 1, "seed": 3,
         "tests": "grayscale JPEG -> RGB"},
    ]


def _write_images(folder: Path, preprocessing: dict[str, Any]) -> list[dict[str, Any]]:
    images = []
    for spec in image_specs(preprocessing):
        width, height = spec["size"]
        file = f"{spec['name']}.jpg"
        (folder / file).write_bytes(_jpeg(width, height, spec["seed"], spec["mode"], spec["orientation"]))
        tensor = image_tensor(folder / file, preprocessing)
        np.save(folder / f"{spec['name']}.input.npy", tensor)
        stored = (height, width) if spec["orientation"] in (5, 6, 7, 8) else (width, height)
        images.append({"name": spec["name"], "file": file, "tensor": f"{spec['name']}.input.npy",
                       "stored_size": list(stored), "upright_size": [width, height], "mode": spec["mode"],
                       "exif_orientation": spec["orientation"], "tests": spec["tests"]})
    return images


def _artifact_vectors(bundle: Bundle, folder: Path, batch: np.ndarray, policy: DecisionPolicy,
                      say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    import onnxruntime as ort

    out = {}
    for name, precision in onnx_artifacts(bundle).items():
        say(f"vectors: {name}")
        runner = reference_runner(bundle, name, precision, logits_name(bundle))
        try:
            answers = model_answers(runner, batch, policy, logits_name(bundle))
        finally:
            runner.close()
        stem = artifact_stem(name)
        np.save(folder / f"{stem}.logits.npy", answers["logits"])
        np.save(folder / f"{stem}.probs.npy", answers["probs"])
        out[name] = {"precision": precision, "artifact_sha256": bundle.artifacts[name]["sha256"],
                     "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
                     "logits": f"{stem}.logits.npy", "probs": f"{stem}.probs.npy",
                     "decisions": answers["decisions"], "melanoma_risk": answers["melanoma_risk"],
                     "uncertain": answers["uncertain"]}
    return out


def write_vectors(bundle_dir: str | Path, progress: Callable[[str], None] | None = None) -> Path:
    """(Re)write `bundle_dir/vectors/` for the bundle as it is now; returns the folder.

    The folder is built aside and swapped in whole, so a kill leaves the old vectors or the new ones.
    """
    from dsedge import __version__

    say = progress or (lambda _msg: None)
    bundle = load_bundle(bundle_dir, verify=True)
    policy = DecisionPolicy.from_manifest(bundle.manifest)
    target = Path(bundle.root) / VECTORS_DIR
    with atomic_dir(target, force=True) as tmp:
        images = _write_images(tmp, bundle.preprocessing)
        batch = np.stack([np.load(tmp / im["tensor"]) for im in images]).astype(np.float32)
        artifacts = _artifact_vectors(bundle, tmp, batch, policy, say)
        index = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "contract_version": CONTRACT_VERSION,
            "dsedge": __version__, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "classes": bundle.classes, "preprocessing": bundle.preprocessing, "policy": policy.to_dict(),
            "quality_checks": "not applied: vectors test preprocessing and the model, not the input gate",
            "tolerances": {"tensor_max_abs": TENSOR_TOLERANCE, "logits_max_abs": LOGIT_TOLERANCE,
                           "logits_scale": "x max(1, max |reference logit|)", "decisions": "identical"},
            "images": images, "artifacts": artifacts,
            "manifest_sha256": sha256_file(Path(bundle.root) / "dsedge.json"),
        }
        files = [im["file"] for im in images] + [im["tensor"] for im in images]
        files += [f for a in artifacts.values() for f in (a["logits"], a["probs"])]
        write_index(tmp, index, files)
    return target
