"""The rule behind `--force`: replace a folder only when it is a dsedge bundle and nothing else.

`dsedge export --out DIR --force` used to delete whatever DIR was — a training
run, a data set, a home folder — once the new bundle was ready. A folder is
replaceable only when every entry in it is something dsedge itself puts in a
bundle: `dsedge.json` (a dsedge manifest), the artifacts it lists, and the
unlisted by-products of dsedge's own steps (timing caches, sensitivity
reports, engines, our hidden temporaries). Anything else — a checkpoint, a
user's notes, a sub-folder — makes `--force` refuse, naming what would be lost.
An empty folder is fine. Hidden temporaries of dsedge's own writers
(`.model.int8.onnx.p123-ab.tmp`, `.roc.png.x1y2.tmp`, left by a kill) count as
by-products when the name inside them is one (issue 26). Torch-free.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from dsedge.errors import BundleError

MANIFEST_NAME = "dsedge.json"
BUNDLE_FORMAT = "dsedge-bundle"
#: Files dsedge writes into a bundle without (always) listing them in the manifest.
BY_PRODUCTS = ("model*.onnx", "model*.plan", "timing*.cache", "calibration.cache", "int8_sensitivity*.json",
               "int8_sensitivity*.md", "MODEL_CARD.md", "*.png", ".dsedge.json.*.tmp", ".*.p*-*.tmp")


def _temp_of(name: str, listed: set[str]) -> bool:
    """True for `.X.<random>.tmp` where X is a listed artifact, the manifest or a by-product (a writer's temp)."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    inner = name[1:-len(".tmp")].rsplit(".", 1)[0]
    return inner == MANIFEST_NAME or inner in listed or any(fnmatch.fnmatch(inner, g) for g in BY_PRODUCTS)
MAX_LISTED = 5


def _manifest_artifacts(folder: Path) -> set[str] | None:
    """Artifact names of a dsedge manifest in `folder`, or None when it holds no readable dsedge manifest."""
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        return None
    artifacts = manifest.get("artifacts")
    return set(artifacts) if isinstance(artifacts, dict) else set()


def foreign_entries(folder: Path) -> list[str]:
    """Entries of `folder` that are not part of a dsedge bundle (what `--force` would destroy)."""
    listed = _manifest_artifacts(folder)
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    if listed is None:
        return [p.name + ("/" if p.is_dir() else "") for p in entries]
    from dsedge.runtime.vectors import (  # golden vectors: a folder dsedge writes
        VECTORS_DIR,
        is_vectors_dir,
    )

    foreign = []
    for p in entries:
        if p.name == VECTORS_DIR and p.is_dir() and not p.is_symlink() and is_vectors_dir(p):
            continue
        if p.name == MANIFEST_NAME or (p.is_file() and not p.is_symlink()
                                       and (p.name in listed or _temp_of(p.name, listed)
                                            or any(fnmatch.fnmatch(p.name, g) for g in BY_PRODUCTS))):
            continue
        foreign.append(p.name + ("/" if p.is_dir() else ""))
    return foreign


def check_replaceable(out: str | Path, force: bool) -> None:
    """Raise a `BundleError` unless writing a bundle to `out` loses nothing but an old bundle."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink():
        raise BundleError(f"output {out} is a symbolic link", "pass the real folder, or a new path")
    if not out.is_dir():
        raise BundleError(f"output {out} exists and is not a folder", "choose a new --out path")
    if not force:
        raise BundleError(f"output folder {out} already exists", "pass --force to replace it")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise BundleError(f"--force would replace {out}, which contains the current folder",
                          "choose a bundle folder of its own for --out")
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:MAX_LISTED]) + (f" ... and {len(foreign) - MAX_LISTED} more"
                                                   if len(foreign) > MAX_LISTED else "")
        what = "is not a dsedge bundle" if _manifest_artifacts(out) is None else "holds files that are not part of its bundle"
        raise BundleError(f"--force replaces only a dsedge bundle; {out} {what} ({shown})",
                          "choose another --out, or move those files away first")


#: The dynamo exporter (torch >= 2.9) writes opset 18 at least; lower requests came out as 18 silently.
MIN_OPSET = 18


def check_opset(opset: int) -> None:
    """Refuse an opset the exporter would not write as asked."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        from dsedge.errors import ExportError

        raise ExportError(f"--opset {opset} is not supported: the exporter writes opsets {MIN_OPSET} to {newest}",
                          f"use --opset {MIN_OPSET} (the default) or higher; TensorRT 10 and ONNX Runtime read 18")


def seal_facts(models: tuple, manifest: dict) -> None:
    """Write the manifest's result-changing facts into each ONNX model's `metadata_props`.

    The artifact sha256s in dsedge.json then cover them, and `load_bundle` refuses
    a manifest whose class order, preprocessing, SimAM lambda or input shape was
    edited afterwards (`dsedge.bundle.rules.check_sealed_facts`).
    """
    from dsedge.bundle.rules import FACTS_KEY, canonical, manifest_facts

    value = canonical(manifest_facts(manifest))
    for model in models:
        if model is None:
            continue
        keep = [(p.key, p.value) for p in model.metadata_props if p.key != FACTS_KEY]
        del model.metadata_props[:]
        for key, val in [*keep, (FACTS_KEY, value)]:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, val
