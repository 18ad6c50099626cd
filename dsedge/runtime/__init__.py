"""Torch-free runtime a device application embeds: bundle loading, preprocessing, prediction.

    from dsedge.runtime import Predictor
    with Predictor("bundle/") as p:
        print(p.predict(["lesion.jpg"]))

Importing this package never imports torch (a test checks `sys.modules`); the
TensorRT runner and ONNX Runtime are imported only when a `Predictor` picks them.
"""

from dsedge.runtime.bundle import Bundle, load_bundle
from dsedge.runtime.predict import Predictor, predict
from dsedge.runtime.preprocess import preprocess_files, preprocess_image

__all__ = ["Bundle", "Predictor", "load_bundle", "predict", "preprocess_files", "preprocess_image"]
