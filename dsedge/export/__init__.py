"""Export stage: torch -> ONNX (SimAM as `dsedge::SimAM` local functions), FP16, bundle manifest.

`export_bundle` is the one entry point; `dsedge export` is its CLI.
"""

from dsedge.export.bundle import export_bundle

__all__ = ["export_bundle"]
