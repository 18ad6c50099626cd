"""The bundle: a folder of artifacts plus one manifest, `dsedge.json` (DESIGN §4). Torch-free.

Artifacts are listed in `manifest["artifacts"]`, keyed by file name::

    "model.fp16.onnx": {"kind": "onnx", "precision": "fp16", "sha256": "...", "bytes": 123, ...}

`kind` is one of "onnx", "tensorrt", "calibration-cache", "onnx-inline", "report" (PNGs of
`dsedge risk`) and "model-card" (MODEL_CARD.md); ONNX entries carry
`"simam": "function" | "inline"`, TensorRT entries their TensorRT version, GPU
and profile. `load_bundle` verifies every hash before anything is used, so a
tampered or truncated file is refused rather than silently run.

The manifest itself is sealed (`dsedge.utils.manifest_rules.seal_manifest`):
`write_manifest` is the one place a manifest is written, and it seals;
`load_bundle` refuses a manifest whose sections no longer match their seal, so
a hand edit of the clinical threshold or a removed artifact entry is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsedge.errors import BundleError
from dsedge.utils.io import atomic_write_json, sha256_file
from dsedge.utils.manifest_rules import check_manifest, check_seal, check_sealed_facts, seal_manifest

MANIFEST_NAME = "dsedge.json"
FORMAT = "dsedge-bundle"
FORMAT_VERSION = 1
KINDS = ("onnx", "tensorrt", "calibration-cache", "onnx-inline", "report", "model-card")


def new_manifest(
    model: dict[str, Any],
    classes: list[str],
    input_spec: dict[str, Any],
    preprocessing: dict[str, Any],
) -> dict[str, Any]:
    """A fresh manifest skeleton; export fills in artifacts, tools and parity."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model,
        "classes": list(classes),
        "input": input_spec,
        "preprocessing": preprocessing,
        "artifacts": {},
        "tools": {},
    }


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    root: Path
    manifest: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.manifest["preprocessing"])

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("artifacts", {})

    @property
    def sha256(self) -> str:
        """sha256 of `dsedge.json`: names this exact bundle (it holds every artifact's sha256)."""
        return sha256_file(self.root / MANIFEST_NAME)

    def path(self, filename: str) -> Path:
        return self.root / filename

    def find(self, kind: str, precision: str | None = None, **match: Any) -> list[str]:
        """File names of artifacts of `kind` (and `precision`, and extra key=value matches)."""
        out = []
        for name, entry in self.artifacts.items():
            if entry.get("kind") != kind:
                continue
            if precision is not None and entry.get("precision") != precision:
                continue
            if any(entry.get(k) != v for k, v in match.items()):
                continue
            out.append(name)
        return sorted(out)

    def require(self, kind: str, precision: str | None = None, **match: Any) -> Path:
        """Path of the single artifact of `kind`/`precision`, or a clear `BundleError`."""
        names = self.find(kind, precision, **match)
        if not names:
            what = f"{kind}{' ' + precision if precision else ''}"
            have = ", ".join(f"{n} ({e.get('kind')} {e.get('precision')})" for n, e in self.artifacts.items())
            hint = {
                ("onnx", "int8"): "run `dsedge calibrate BUNDLE --data DIR` first",
                ("tensorrt", None): "run `dsedge build BUNDLE --precision ...` on the target GPU",
            }.get((kind, precision if kind == "onnx" else None), "re-run `dsedge export`")
            raise BundleError(f"bundle {self.root} has no {what} artifact (it has: {have or 'none'})", hint)
        return self.root / names[0]

    def save(self) -> None:
        """Seal and write the manifest (atomically)."""
        write_manifest(self.root, self.manifest)

    def add_artifact(self, filename: str, kind: str, precision: str, **extra: Any) -> dict[str, Any]:
        """Hash an artifact already written into the bundle folder and record it (then `save()`)."""
        return add_artifact(self.manifest, self.root, filename, kind, precision, **extra)

    def verify(self, filename: str | None = None) -> None:
        """Check the sha256 (and existence) of one or all artifacts."""
        names = [filename] if filename else list(self.artifacts)
        for name in names:
            entry = self.artifacts.get(name)
            if entry is None:
                raise BundleError(f"{name} is not listed in {self.root / MANIFEST_NAME}")
            p = self.root / name
            if not p.is_file():
                raise BundleError(f"bundle artifact missing: {p}", "re-run the step that made it")
            digest = sha256_file(p)
            if digest != entry.get("sha256"):
                raise BundleError(
                    f"bundle artifact {p} does not match its manifest sha256 "
                    f"(expected {str(entry.get('sha256'))[:12]}…, got {digest[:12]}…): "
                    "the file was modified, truncated or replaced",
                    "re-export the bundle; never edit artifacts by hand",
                )


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Seal `manifest` and write it as FOLDER/dsedge.json: every writer (export, risk, calibrate, build) ends here."""
    path = Path(folder) / MANIFEST_NAME
    seal_manifest(manifest)
    atomic_write_json(path, manifest)
    return path


def add_artifact(
    manifest: dict[str, Any], root: Path, filename: str, kind: str, precision: str, **extra: Any
) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    p = Path(root) / filename
    entry = {"kind": kind, "precision": precision, "sha256": sha256_file(p), "bytes": p.stat().st_size}
    entry.update(extra)
    manifest.setdefault("artifacts", {})[filename] = entry
    return entry


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read `dsedge.json` from a bundle folder and (by default) verify every artifact's sha256."""
    root = Path(path)
    if not root.exists():
        raise BundleError(f"bundle not found: {root}", "create one with `dsedge export`")
    if root.is_file() and root.name == MANIFEST_NAME:
        root = root.parent
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise BundleError(f"{root} is not a dsedge bundle (no {MANIFEST_NAME})", "create one with `dsedge export`")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath} is not a dsedge manifest (format != {FORMAT!r})")
    check_manifest(manifest, mpath)  # format_version type, classes, artifact names inside the bundle
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(
            f"{mpath} has format_version {manifest.get('format_version')}, newer than this dsedge "
            f"understands ({FORMAT_VERSION})",
            "upgrade dsedge",
        )
    for key in ("classes", "preprocessing", "input", "artifacts"):
        if key not in manifest:
            raise BundleError(f"{mpath} lacks the required key '{key}'")
    bundle = Bundle(root=root, manifest=manifest)
    if verify:
        bundle.verify()
        check_sealed_facts(root, manifest, mpath)  # dsedge.json edits that change results
    check_seal(manifest, mpath)  # any other edit of dsedge.json (clinical, artifacts, ...)
    return bundle
