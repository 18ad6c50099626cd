"""The bundle: its type, its manifest's rules and seal, its atomic updates, its artifact table (DESIGN §5).

The ground floor every stage stands on (DESIGN §2): export and calibration
write bundles, engines and the runtime read them, Triton and the bench serve
and measure them; this package imports nothing of theirs. Torch-free.

- `core`: `Bundle` (typed accessors, sha256 verification), `load_bundle`, `write_manifest`;
- `rules`: what a manifest must satisfy, and its seal;
- `update`: `bundle_update`, atomic replacement of artifacts and manifest sections;
- `artifacts`: precision -> file name, kind, the backends that run it.
"""

from dsedge.bundle.artifacts import (
    CALIBRATION_CACHE,
    INLINE_FP32,
    KINDS,
    MIXED_INT8,
    ONNX_ARTIFACTS,
    ArtifactSpec,
    artifacts_for,
    engine_file,
    onnx_file,
    timing_cache_file,
)
from dsedge.bundle.core import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    Bundle,
    Manifest,
    ManifestReader,
    add_artifact,
    load_bundle,
    new_manifest,
    read_manifest,
    write_manifest,
)
from dsedge.bundle.update import BundleUpdate, bundle_update

__all__ = [
    "CALIBRATION_CACHE",
    "FORMAT",
    "FORMAT_VERSION",
    "INLINE_FP32",
    "KINDS",
    "MANIFEST_NAME",
    "MIXED_INT8",
    "ONNX_ARTIFACTS",
    "ArtifactSpec",
    "Bundle",
    "BundleUpdate",
    "Manifest",
    "ManifestReader",
    "add_artifact",
    "artifacts_for",
    "bundle_update",
    "engine_file",
    "load_bundle",
    "new_manifest",
    "onnx_file",
    "read_manifest",
    "timing_cache_file",
    "write_manifest",
]
