"""Rules a bundle manifest must follow before anything in it is trusted (torch-free).

The sha256 of every artifact protects the files, but the manifest itself is
plain JSON a user can edit. Two edits did harm silently (issue 14): an
artifact name such as `../other/model.onnx` made a bundle load and hash a file
outside itself, and a `format_version` that is not a number ended in an
internal error. `check_manifest` refuses both with one clear line.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from dsedge.errors import BundleError

HINT = "re-export the bundle; never edit dsedge.json by hand"


def check_artifact_name(name: Any, manifest_path: Path) -> None:
    """An artifact must be a plain file name inside the bundle folder: no folder part, no '..', not hidden."""
    text = name if isinstance(name, str) else ""
    parts = set(PurePosixPath(text).parts) | set(PureWindowsPath(text).parts)
    if (not text or text in (".", "..") or text.startswith(".") or "/" in text or "\\" in text
            or ".." in parts or PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()):
        raise BundleError(f"{manifest_path}: artifact path {name!r} is not a file inside the bundle", HINT)


def check_manifest(manifest: dict[str, Any], manifest_path: Path) -> None:
    """Types of the keys every reader relies on, and artifact names that stay inside the bundle."""
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{manifest_path}: format_version must be a whole number >= 1, got {version!r}", HINT)
    classes = manifest.get("classes")
    if (not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes)
            or len(set(classes)) != len(classes)):
        raise BundleError(f"{manifest_path}: classes must be a list of distinct names, got {classes!r}", HINT)
    for key in ("preprocessing", "input", "artifacts"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise BundleError(f"{manifest_path}: '{key}' must be an object, got {type(manifest[key]).__name__}", HINT)
    for name in manifest.get("artifacts", {}):
        check_artifact_name(name, manifest_path)
