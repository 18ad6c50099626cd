"""`dsedge export --force` replaces a bundle, never a run folder or any other folder (issue 14, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsedge.cli import main
from dsedge.errors import BundleError, ExportError
from dsedge.export.safety import check_opset, check_replaceable, foreign_entries


def _bundle(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "model.onnx").write_bytes(b"onnx")
    (root / "MODEL_CARD.md").write_text("card")
    (root / "timing.h100.trt10.cache").write_bytes(b"cache")  # a by-product build does not list
    (root / "dsedge.json").write_text(json.dumps({"format": "dsedge-bundle", "artifacts": {"model.onnx": {}}}))
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_bundle_may_be_replaced(tmp_path: Path) -> None:
    check_replaceable(_bundle(tmp_path / "b"), force=True)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", force=True)
    check_replaceable(tmp_path / "new", force=False)


@pytest.mark.parametrize("setup, message", [
    (lambda d: (d.mkdir(), (d / "last.safetensors").write_bytes(b"w"), (d / "history.csv").write_text("e")),
     "is not a dsedge bundle"),
    (lambda d: (_bundle(d), (d / "notes.txt").write_text("mine")), "holds files that are not part of its bundle"),
    (lambda d: (_bundle(d), (d / "eval-val").mkdir()), "eval-val/"),
    (lambda d: (d.mkdir(), (d / "dsedge.json").write_text('{"format": "something-else"}')), "is not a dsedge bundle"),
])
def test_force_refuses_anything_but_a_bundle(tmp_path: Path, setup, message) -> None:
    d = tmp_path / "out"
    setup(d)
    with pytest.raises(BundleError, match=message):
        check_replaceable(d, force=True)


def test_foreign_entries_lists_what_would_be_lost(tmp_path: Path) -> None:
    d = _bundle(tmp_path / "b")
    (d / "keep.txt").write_text("x")
    assert foreign_entries(d) == ["keep.txt"]


def test_cli_export_force_on_a_training_run_loses_nothing(tmp_path: Path, capsys) -> None:
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "best.safetensors").write_bytes(b"weights")
    (run / "config.json").write_text("{}")
    before = _files(run)
    with pytest.raises(SystemExit) as e:
        main(["export", "--random-init", "--out", str(run), "--force"])
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and "--force replaces only a dsedge bundle" in err and "hint:" in err
    assert _files(run) == before


@pytest.mark.parametrize("opset", [5, 17, 99])
def test_unsupported_opsets_are_refused(opset: int) -> None:
    with pytest.raises(ExportError, match=f"--opset {opset} is not supported"):
        check_opset(opset)
    check_opset(18)
