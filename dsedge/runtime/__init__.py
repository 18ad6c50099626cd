"""Torch-free runtime a device application embeds: bundle loading, quality checks, prediction, decisions.

    from dsedge.runtime import Predictor
    with Predictor("bundle/") as p:
        for r in p.predict(["lesion.jpg"]):
            print(r["decision"], r["melanoma_risk"], r["quality"]["flags"])

Importing this package never imports torch (a test checks `sys.modules`); the
TensorRT runner, ONNX Runtime and OpenVINO are imported only when a `Predictor` picks them.
Modules: bundle (manifest, hashes), preprocess (the NumPy/Pillow twin of the eval transform),
quality (input checks), decision (calibrated risk, refer / benign / cannot assess), backends
(engine choice, every output of one call), heatmap (class-activation overlays), results
(inputs and CSV), predict (`Predictor`).
"""

from dsedge.bundle import Bundle, load_bundle
from dsedge.runtime.decision import CANNOT_ASSESS, REFER, DecisionPolicy
from dsedge.runtime.predict import Predictor, predict
from dsedge.runtime.preprocess import preprocess_files, preprocess_image
from dsedge.runtime.quality import QualityThresholds, assess
from dsedge.runtime.results import expand_inputs, results_csv

__all__ = [
    "CANNOT_ASSESS",
    "REFER",
    "Bundle",
    "DecisionPolicy",
    "Predictor",
    "QualityThresholds",
    "assess",
    "expand_inputs",
    "load_bundle",
    "predict",
    "preprocess_files",
    "preprocess_image",
    "results_csv",
]
