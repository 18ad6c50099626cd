"""Old import path of the bundle type; it lives in `dsedge.bundle` now (DESIGN §2).

Kept only because `dsedge.train.evaluate` (being edited elsewhere) and older
scripts import from here. New code imports from `dsedge.bundle`.
"""

from dsedge.bundle import (
    MANIFEST_NAME,
    Bundle,
    add_artifact,
    load_bundle,
    new_manifest,
    write_manifest,
)

__all__ = ["MANIFEST_NAME", "Bundle", "add_artifact", "load_bundle", "new_manifest", "write_manifest"]
