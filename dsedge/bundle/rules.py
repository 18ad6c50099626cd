"""Rules a bundle manifest must follow before anything in it is trusted (torch-free).

The sha256 of every artifact protects the files, but the manifest itself is
plain JSON a user can edit. Two edits did harm silently (issue 14): an
artifact name such as `../other/model.onnx` made a bundle load and hash a file
outside itself, and a `format_version` that is not a number ended in an
internal error. `check_manifest` refuses both with one clear line.

Issue 26: an edit of the `clinical` block (threshold 0.077 -> 0.99, temperature
100, a negative uncertainty margin) or the removal of an artifact together with
its entry was accepted and changed decisions. Every dsedge writer now *seals*
the manifest (`seal_manifest`): a sha256 per top-level section and one over
those, stored under `"seal"`. `check_seal` refuses a manifest whose sections
no longer match it, naming the sections that changed. The seal is generic:
every section is covered except the few in `UNSEALED`, so a section added
later (claims, splits, ...) is protected without touching this file. It is an
integrity check against hand edits and damage, not a signature: anyone can
recompute it, so it says nothing about who wrote the bundle.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from dsedge.errors import BundleError

HINT = "re-export the bundle; never edit dsedge.json by hand"
#: Top-level manifest key holding the seal.
SEAL_KEY = "seal"
#: Sections outside the seal: only the seal itself. Add a key here only for data nothing ever decides on.
UNSEALED = frozenset({SEAL_KEY})
SEAL_ALGORITHM = "sha256 over canonical JSON (sorted keys, no spaces) of each top-level section"


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
    check_clinical(manifest.get("clinical"), manifest_path)


def _number(value: Any, lo: float, hi: float, lo_open: bool = False) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return (value > lo if lo_open else value >= lo) and value <= hi


#: Known `clinical` keys -> (check, what a valid value is). Keys not listed here are not type-checked.
_CLINICAL_RULES: dict[tuple[str, ...], tuple[Any, str]] = {
    ("temperature",): (lambda v: _number(v, 0.0, 1e3, lo_open=True), "a number > 0"),
    ("uncertain_margin",): (lambda v: _number(v, 0.0, 1.0), "a number in [0, 1]"),
    ("operating_point", "threshold"): (lambda v: v is None or _number(v, 0.0, 1.0), "a number in [0, 1]"),
    ("quality", "min_side"): (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                              "a whole number > 0"),
}


def check_clinical(block: Any, manifest_path: Path) -> None:
    """Types and ranges of the clinical values the runtime decides with ("high" as a threshold is refused)."""
    if block is None:
        return
    if not isinstance(block, dict):
        raise BundleError(f"{manifest_path}: 'clinical' must be an object, got {type(block).__name__}", HINT)
    for keys, (ok, want) in _CLINICAL_RULES.items():
        node: Any = block
        for k in keys:
            node = node.get(k, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT and not ok(node):
            raise BundleError(f"{manifest_path}: clinical.{'.'.join(keys)} must be {want}, got {node!r}", HINT)


_ABSENT = object()


# ----------------------------------------------------------------------------- the manifest's own seal


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode("utf-8")).hexdigest()


def section_digests(manifest: dict[str, Any]) -> dict[str, str]:
    """sha256 of every sealed top-level section, computed on the JSON form (what is on disk)."""
    from dsedge.utils.io import json_ready

    plain = json_ready({k: v for k, v in manifest.items() if k not in UNSEALED})
    return {key: _digest(value) for key, value in plain.items()}


def seal_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Store the seal of `manifest` in it (in place) and return it; every dsedge writer calls this last."""
    sections = section_digests(manifest)
    manifest[SEAL_KEY] = {"algorithm": SEAL_ALGORITHM, "sha256": _digest(sections), "sections": sections}
    return manifest


def check_seal(manifest: dict[str, Any], manifest_path: Path) -> None:
    """Refuse a manifest edited after dsedge wrote it, naming the sections that changed."""
    seal = manifest.get(SEAL_KEY)
    sections = seal.get("sections") if isinstance(seal, dict) else None
    if not isinstance(sections, dict) or seal.get("sha256") != _digest(sections):
        what = "has no seal" if seal is None else "has a damaged seal"
        raise BundleError(f"{manifest_path} {what}: it was edited by hand or written by an older dsedge", HINT)
    mine = section_digests(manifest)
    changed = sorted(k for k in set(mine) | set(sections) if mine.get(k) != sections.get(k))
    if changed:
        verbs = ["removed" if k not in mine else "added" if k not in sections else "changed" for k in changed]
        raise BundleError(
            f"{manifest_path} was edited after dsedge wrote it: "
            + ", ".join(f"{k} {v}" for k, v in zip(changed, verbs, strict=True)), HINT)


# ----------------------------------------------------------------------------- facts sealed in the model file

#: ONNX `metadata_props` key holding the result-changing facts export sealed into each model file.
FACTS_KEY = "dsedge.facts"


def manifest_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """What changes a bundle's results without changing an artifact: class order, preprocessing, SimAM lambda, input.

    The artifacts' sha256 cannot notice an edit of these in dsedge.json, so export
    also writes them into every ONNX file (whose hash the manifest holds).
    """
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    return {
        "classes": manifest.get("classes"),
        "preprocessing": manifest.get("preprocessing"),
        "simam_lambda": model.get("simam_lambda"),
        "input_shape": (manifest.get("input") or {}).get("shape"),
    }


def canonical(obj: Any) -> str:
    """One text per JSON value: sorted keys, no spaces (what seals and sealed facts compare)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _varint(f: Any) -> int | None:
    shift = result = 0
    while True:
        b = f.read(1)
        if not b:
            return None
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("bad varint")


def _fields(data: bytes) -> dict[int, bytes]:
    import io

    out: dict[int, bytes] = {}
    f = io.BytesIO(data)
    while (tag := _varint(f)) is not None:
        number, wire = tag >> 3, tag & 7
        if wire == 2:
            size = _varint(f) or 0
            out[number] = f.read(size)
        elif wire == 0:
            _varint(f)
        else:
            f.read(8 if wire == 1 else 4)
    return out


def onnx_metadata(path: Path) -> dict[str, str]:
    """`metadata_props` of an ONNX file, read from the protobuf without the onnx package (runtime is torch- and onnx-free).

    Walks the top-level fields of ModelProto and skips the graph by its length, so
    only a few bytes are parsed however large the model is.
    """
    props: dict[str, str] = {}
    with open(path, "rb") as f:
        while (tag := _varint(f)) is not None:
            number, wire = tag >> 3, tag & 7
            if wire == 2:
                size = _varint(f)
                if size is None:
                    break
                if number == 14:  # metadata_props: StringStringEntryProto {key = 1, value = 2}
                    entry = _fields(f.read(size))
                    props[entry.get(1, b"").decode("utf-8", "replace")] = entry.get(2, b"").decode("utf-8", "replace")
                else:
                    f.seek(size, 1)
            elif wire == 0:
                _varint(f)
            elif wire in (1, 5):
                f.seek(8 if wire == 1 else 4, 1)
            else:
                break  # not protobuf we understand: nothing sealed to compare
    return props


def check_sealed_facts(root: Path, manifest: dict[str, Any], manifest_path: Path) -> None:
    """Refuse a manifest whose classes/preprocessing/lambda/input differ from those sealed in its ONNX files.

    Files exported before facts were sealed carry none and are not compared.
    """
    mine = canonical(manifest_facts(manifest))
    for name, entry in (manifest.get("artifacts") or {}).items():
        if not isinstance(entry, dict) or entry.get("kind") not in ("onnx", "onnx-inline"):
            continue
        path = root / name
        if not path.is_file():
            continue
        try:
            sealed = onnx_metadata(path).get(FACTS_KEY)
        except (OSError, ValueError):
            continue  # the sha256 check reports a broken file
        if sealed is None:
            continue
        import json

        try:
            theirs = json.loads(sealed)
        except json.JSONDecodeError:
            continue
        if canonical(theirs) != mine:
            mine_d = manifest_facts(manifest)
            changed = sorted(k for k in set(theirs) | set(mine_d) if theirs.get(k) != mine_d.get(k))
            raise BundleError(
                f"{manifest_path} was edited: {', '.join(changed)} differ from what {name} was exported with",
                HINT)
