"""The device install is torch-free: base dependencies, the `train` extra, and the CLI without torch.

CI proves it for real in a second, clean venv (.ci/runtime_only.sh: `pip install .`,
`dsedge predict`, the runtime tests); these tests pin the pieces that make it work.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from dsedge.config import tomllib

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "nvidia-", "triton", "tensorrt", "cuda-python")


def _names(requirements: list[str]) -> list[str]:
    return [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in requirements]


def test_base_install_is_the_runtime_and_train_extra_has_the_rest() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _names(project["dependencies"])
    assert not [n for n in base if n.startswith(HEAVY)], base
    assert {"numpy", "pillow", "onnxruntime", "typer", "rich"} <= set(base)
    train = _names(project["optional-dependencies"]["train"])
    assert {"torch", "torchvision", "onnx", "onnxscript", "safetensors"} <= set(train)
    # `make install` (what `make test` / `make bench` run) installs the training side
    assert re.search(r"pip install -e '\.\[train,[^']*\]'", (ROOT / "Makefile").read_text())
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and ".ci/runtime_only.sh" in ci


def test_training_command_without_torch_says_which_extra(monkeypatch, tmp_path: Path, capsys) -> None:
    from dsedge.cli import main

    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.") or m.startswith("dsedge.train")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ModuleNotFoundError
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tmp_path / "ckpt.safetensors"), "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "'torch' is not installed" in err and "pip install 'dsedge[train]'" in err and "internal error" not in err


def test_dsedge_warnings_print_as_one_line(capsys) -> None:
    from dsedge.cli import _show_warning
    from dsedge.engines.trt_build import TensorRTWarning

    _show_warning(TensorRTWarning("TF32 stays on"), TensorRTWarning, "x.py", 1)
    assert capsys.readouterr().err.strip() == "warning: TF32 stays on"
