"""The bundle: a folder of artifacts plus one manifest, `dsedge.json` (DESIGN §5). Torch-free.

Artifacts are listed in the manifest's `artifacts` section, keyed by file name::

    "model.fp16.onnx": {"kind": "onnx", "precision": "fp16", "sha256": "...", "bytes": 123, ...}

`kind` is one of "onnx", "tensorrt", "calibration-cache", "onnx-inline", "report" (PNGs of
`dsedge risk`) and "model-card" (MODEL_CARD.md); ONNX entries carry
`"simam": "function" | "inline"`, TensorRT entries their TensorRT version, GPU
and profile. `load_bundle` verifies every hash before anything is used, so a
tampered or truncated file is refused rather than silently run.

The manifest itself is sealed (`dsedge.bundle.rules.seal_manifest`):
`write_manifest` is the one place a manifest is written, and it seals;
`load_bundle` refuses a manifest whose sections no longer match their seal, so
a hand edit of the clinical threshold or a removed artifact entry is refused.

Readers outside this package use the typed accessors of `ManifestReader`
(`bundle.classes`, `bundle.input_size`, `bundle.clinical`, ...), or
`read_manifest(d)` for a plain manifest dict, never `manifest[...]`: the
manifest's layout is this package's business (issue 24).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsedge import MELANOMA_CLASS
from dsedge.bundle.artifacts import KINDS, onnx_file
from dsedge.bundle.rules import check_manifest, check_seal, check_sealed_facts, seal_manifest
from dsedge.errors import BundleError
from dsedge.utils.io import atomic_write_json, sha256_file

MANIFEST_NAME = "dsedge.json"
FORMAT = "dsedge-bundle"
FORMAT_VERSION = 1


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


def _section(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    value = manifest.get(key)
    return value if isinstance(value, dict) else {}


class ManifestReader:
    """Typed reads of a manifest: the one place that knows its keys (a `Bundle` is one)."""

    manifest: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.manifest["preprocessing"])

    @property
    def preprocessing_contract(self) -> dict[str, Any]:
        return _section(self.manifest, "preprocessing_contract")

    @property
    def input_spec(self) -> dict[str, Any]:
        return _section(self.manifest, "input")

    @property
    def input_name(self) -> str:
        return str(self.input_spec.get("name", "input"))

    @property
    def input_size(self) -> int:
        """Side of the square model input in pixels (the last entry of the input shape)."""
        return int(self.manifest["input"]["shape"][-1])

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """Graph outputs as export recorded them (logits first; `cam` when exported with --cam)."""
        return list(self.manifest.get("outputs") or [])

    @property
    def model(self) -> dict[str, Any]:
        return _section(self.manifest, "model")

    @property
    def model_name(self) -> str:
        return str(self.model.get("name", "model"))

    @property
    def clinical(self) -> dict[str, Any]:
        """What `dsedge risk` fitted (temperature, operating point, quality); {} before it ran."""
        return _section(self.manifest, "clinical")

    @property
    def operating_point(self) -> dict[str, Any]:
        """The fitted melanoma operating point (threshold, class, its intervals); {} before `dsedge risk`."""
        point = self.clinical.get("operating_point")
        return point if isinstance(point, dict) else {}

    @property
    def melanoma_class(self) -> str:
        """The class the operating point refers on (MELANOMA_CLASS unless the bundle names another)."""
        cls = self.operating_point.get("class")
        return cls if isinstance(cls, str) else MELANOMA_CLASS

    @property
    def calibration(self) -> dict[str, Any]:
        """What `dsedge calibrate` recorded about the INT8 artifact; {} before it ran."""
        return _section(self.manifest, "calibration")

    @property
    def claims(self) -> dict[str, Any]:
        """Measured claims (`dsedge eval BUNDLE` re-checks them)."""
        return _section(self.manifest, "claims")

    @property
    def training(self) -> dict[str, Any]:
        return _section(self.manifest, "training")

    @property
    def tuning_split(self) -> dict[str, Any] | None:
        """The slice of training data the checkpoint held out for tuning, if any."""
        return self.training.get("tuning_split") or None

    @property
    def parity(self) -> dict[str, Any]:
        return _section(self.manifest, "parity")

    @property
    def simam(self) -> dict[str, Any]:
        return _section(self.manifest, "simam")

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("artifacts", {})

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


@dataclass(frozen=True)
class Manifest(ManifestReader):
    """A manifest dict read through the typed accessors (for code handed a dict, not a `Bundle`)."""

    manifest: dict[str, Any]


def read_manifest(manifest: dict[str, Any] | ManifestReader) -> ManifestReader:
    """Typed reads of a manifest dict (a `Bundle` or `Manifest` is returned as it is)."""
    return manifest if isinstance(manifest, ManifestReader) else Manifest(manifest)


@dataclass
class Bundle(ManifestReader):
    """A loaded, verified bundle."""

    root: Path
    manifest: dict[str, Any]

    @property
    def sha256(self) -> str:
        """sha256 of `dsedge.json`: names this exact bundle (it holds every artifact's sha256)."""
        return sha256_file(self.root / MANIFEST_NAME)

    def path(self, filename: str) -> Path:
        return self.root / filename

    def onnx(self, precision: str) -> Path:
        """The ONNX file of `precision`: the table's canonical name when listed, else the one listed, else a
        `BundleError` naming what the bundle has."""
        path = self.onnx_if_present(precision)
        return path if path is not None else self.require("onnx", precision)

    def onnx_if_present(self, precision: str) -> Path | None:
        names = self.find("onnx", precision)
        if not names:
            return None
        canonical = onnx_file(precision)
        return self.root / (canonical if canonical in names else names[0])

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
