"""The device runtime never imports torch: checked in a clean interpreter via sys.modules.

A dermatoscope image ships dsedge.runtime + ONNX Runtime or TensorRT, not a
2 GB PyTorch. The child process imports the public runtime API, the runners,
the TensorRT builder and doctor, runs a real prediction through ONNX Runtime
and a doctor report, and only then looks at sys.modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lesion_images import lesion_image
from tiny_bundle import make_tiny_bundle

CHILD = r"""
import json, sys
import dsedge.runtime
from dsedge.runtime import Predictor, load_bundle, predict, preprocess_files
import dsedge.engines.trt_runner, dsedge.engines.trt_build, dsedge.engines.ort_runner, dsedge.doctor
import dsedge.engines.openvino_runner, dsedge.runtime.backends, dsedge.runtime.quality
import dsedge.runtime.decision, dsedge.runtime.heatmap, dsedge.runtime.results
with Predictor(sys.argv[1]) as p:
    results = p.predict([sys.argv[2]])
try:
    import openvino  # noqa: F401 - the OpenVINO backend, when installed, must stay torch-free too
    with Predictor(sys.argv[1], backend="openvino") as ov:
        ov.predict([sys.argv[2]])
except ImportError:
    pass
dsedge.doctor.doctor()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
print(json.dumps({"heavy": heavy, "top": results[0]["top_class"], "backend": p.info.backend}))
"""


def test_runtime_does_not_import_torch(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle")
    img = tmp_path / "x.png"
    lesion_image((200, 160)).save(img)  # pixel noise would be "not a dermoscopy image": no top class
    out = subprocess.run([sys.executable, "-c", CHILD, str(bundle), str(img)],
                         capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"torch modules imported by the runtime: {report['heavy']}"
    assert report["backend"] == "onnxruntime" and report["top"] in ("MEL", "NV", "SK")
