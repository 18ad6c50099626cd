#!/usr/bin/env bash
# The device install: `pip install .` (no extras) into a second, clean venv must pull no torch,
# torchvision or CUDA wheels, and `dsedge predict` plus the torch-free runtime tests must pass there.
# Usage: .ci/runtime_only.sh [MAIN_PYTHON]   (MAIN_PYTHON, default .venv/bin/python, makes the tiny bundle)
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN_PY="${1:-.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dsedge-runtime-only.XXXXXX")"
trap 'rm -rf "$WORK"; rm -rf build' EXIT
RT="$WORK/venv"

echo "== runtime-only install into $RT"
python3 -m venv "$RT"
"$RT/bin/python" -m pip install --quiet .
rm -rf build  # pip's in-tree build leftovers (ignored by git, but not ours to keep)

echo "== no torch, torchvision, CUDA (nvidia-*, cuda-*) or TensorRT wheels installed"
"$RT/bin/python" .ci/heavy_wheels.py

echo "== dsedge.runtime and the CLI import without torch"
"$RT/bin/python" -P -c 'import importlib.util as u, sys; assert u.find_spec("torch") is None, "torch is importable"; import dsedge.runtime, dsedge.cli; assert "torch" not in sys.modules; print("ok:", dsedge.runtime.__file__)'
"$RT/bin/dsedge" --help >/dev/null

echo "== dsedge predict on a tiny bundle made by the main venv"
"$MAIN_PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
import numpy as np
from PIL import Image
from tiny_bundle import make_tiny_bundle
work = Path(sys.argv[1])
make_tiny_bundle(work / "bundle")
rng = np.random.default_rng(0)
lesion = np.clip(rng.normal((150, 110, 90), 30, size=(360, 480, 3)), 0, 255).astype(np.uint8)
Image.fromarray(lesion).save(work / "lesion.png")
EOF
(cd "$WORK" && "$RT/bin/dsedge" predict bundle lesion.png --json > predict.json)
"$RT/bin/python" - "$WORK/predict.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
(result,) = report["results"]
assert result.get("error") is None, result
print("predict:", report["runner"]["backend"], {k: result.get(k) for k in ("top_class", "decision", "probabilities")})
EOF

echo "== a training command says which extra it needs (exit 2, one line, no traceback)"
set +e
msg="$(cd "$WORK" && "$RT/bin/dsedge" eval missing.safetensors --data . 2>&1)"; rc=$?
set -e
echo "$msg"
[ "$rc" -eq 2 ] && grep -q "dsedge\[train\]" <<<"$msg" && ! grep -q Traceback <<<"$msg"

echo "== torch-free runtime tests in the runtime-only venv (test tools: pytest, onnx)"
"$RT/bin/python" -m pip install --quiet "pytest>=8" "onnx>=1.17"
COLUMNS=200 "$RT/bin/python" -P -m pytest -p no:cacheprovider -q \
  tests/test_runtime_bundle.py tests/test_runtime_predict.py tests/test_runtime_import.py
