"""`dsedge models` and the CLI shell."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dsedge.cli import main


def test_models_table_lists_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["models", "--no-flops"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for name in ("ds_resnet50", "resnet50", "vgg16", "googlenet", "mobilenet_v2", "shufflenet_v2_x1_0", "inception_v3"):
        assert name in out


def test_python_m_dsedge_help() -> None:
    r = subprocess.run([sys.executable, "-m", "dsedge", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "data" in r.stdout and "models" in r.stdout
