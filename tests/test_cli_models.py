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


def test_models_lists_the_shipped_weights_at_their_true_input_size(capsys: pytest.CaptureFixture[str]) -> None:
    from dsedge.models.weights import shipped_meta

    meta = shipped_meta("isic2017")
    if meta is None:
        pytest.skip("no shipped weights in this checkout")
    with pytest.raises(SystemExit) as e:
        main(["models", "--no-flops"])
    out = capsys.readouterr()
    assert e.value.code == 0
    line = next(x for x in out.out.splitlines() if x.lstrip("│| ").startswith("isic2017"))
    assert f" {meta['input_size']} " in line and meta["input_size"] == 224  # the shipped file's own size
    assert "models: done" in out.err  # piped: plain progress lines on stderr, not silence


def test_progress_helper_prints_plain_throttled_lines_when_not_a_terminal() -> None:
    import io

    from dsedge.utils.progress import progress

    stream = io.StringIO()
    with progress("work", total=1000, stream=stream, terminal=False, interval=60) as p:
        p.note("step one")
        for _ in range(1000):
            p.advance()
    lines = stream.getvalue().splitlines()
    assert lines[1].endswith("work: step one 0/1000")  # a new step is always written
    assert len(lines) == 3 and lines[-1].endswith("work: done")  # 1000 advances within 60 s: no line each


def test_progress_heartbeat_speaks_during_a_long_silent_step() -> None:
    import io
    import time

    from dsedge.utils.progress import progress

    stream = io.StringIO()
    with progress("export", stream=stream, terminal=False, interval=0.1) as p:
        p.note("parity")
        time.sleep(0.35)
    assert "export: parity (still working)" in stream.getvalue()
