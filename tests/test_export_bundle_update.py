"""Atomic bundle updates (issue 14): a failure at any point leaves a bundle that loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_bundle import make_tiny_bundle

from dsedge.bundle import bundle_update, load_bundle
from dsedge.bundle import core as bundle_mod


def _bundle(tmp_path: Path) -> Path:
    root = make_tiny_bundle(tmp_path / "b")
    b = load_bundle(root)
    with bundle_update(b) as up:
        up.stage("extra.onnx").write_bytes(b"old")
        up.add_artifact("extra.onnx", "onnx", "int8")
        up.set_key("calibration", {"seed": 0})
    return root


def test_commit_swaps_files_and_manifest(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    b = load_bundle(root)
    with bundle_update(b) as up:
        up.stage("extra.onnx").write_bytes(b"new")
        up.add_artifact("extra.onnx", "onnx", "int8", note="second")
        up.set_key("calibration", {"seed": 1})
    b = load_bundle(root)
    assert (root / "extra.onnx").read_bytes() == b"new" and b.artifacts["extra.onnx"]["note"] == "second"
    assert b.manifest["calibration"] == {"seed": 1}
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_new_artifacts_honour_the_umask(tmp_path: Path) -> None:
    import os

    root = _bundle(tmp_path)
    old = os.umask(0o022)
    try:
        with bundle_update(load_bundle(root)) as up:
            up.stage("extra.onnx").write_bytes(b"new")
            up.add_artifact("extra.onnx", "onnx", "int8")
    finally:
        os.umask(old)
    assert (root / "extra.onnx").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_failure_while_staging_leaves_the_old_bundle(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    with pytest.raises(KeyboardInterrupt), bundle_update(load_bundle(root)) as up:
        up.stage("extra.onnx").write_bytes(b"half")
        raise KeyboardInterrupt
    b = load_bundle(root)
    assert (root / "extra.onnx").read_bytes() == b"old" and b.manifest["calibration"] == {"seed": 0}
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("fail_at", ["swap", "publish"])
def test_failure_during_commit_still_loads(tmp_path: Path, monkeypatch, fail_at: str) -> None:
    """Killed after the manifest retired the entry: the bundle loads, without the half-replaced artifact."""
    root = _bundle(tmp_path)
    import dsedge.bundle.update as mod

    real_replace = mod.os.replace

    def replace(src, dst):  # the manifest's own atomic save still works; the artifact swap is killed
        if Path(src).name.startswith(".extra.onnx."):
            raise KeyboardInterrupt
        real_replace(src, dst)

    if fail_at == "swap":
        monkeypatch.setattr(mod.os, "replace", replace)
    else:
        monkeypatch.setattr(bundle_mod, "add_artifact", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt), bundle_update(load_bundle(root)) as up:
        up.stage("extra.onnx").write_bytes(b"new")
        up.add_artifact("extra.onnx", "onnx", "int8")
        up.set_key("calibration", {"seed": 1})
    monkeypatch.undo()
    b = load_bundle(root)  # verifies every listed sha256
    assert "extra.onnx" not in b.artifacts and "calibration" not in b.manifest
    assert "model.onnx" in b.artifacts


def test_remove_and_listing_rules(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    b = load_bundle(root)
    with pytest.raises(ValueError, match="stage"), bundle_update(b) as up:
        up.add_artifact("never-staged.onnx", "onnx", "int8")
    with bundle_update(load_bundle(root)) as up:
        up.remove_artifact("extra.onnx")
        up.drop_key("calibration")
    b = load_bundle(root)
    assert "extra.onnx" not in b.artifacts and not (root / "extra.onnx").exists() and "calibration" not in b.manifest


def test_a_killed_updates_temps_are_swept_by_the_next_update(tmp_path: Path) -> None:
    """Issue 26: a kill left `.model.int8.onnx.*.tmp` (calibrate) and three `.tmp` files (risk) for good."""
    import os

    root = _bundle(tmp_path)
    dead = [root / f".{n}.p999999999-ab{i}.tmp" for i, n in enumerate(("model.int8.onnx", "roc.png",
                                                                        "reliability.png", "MODEL_CARD.md"))]
    for p in dead:
        p.write_bytes(b"half written")
    live = root / f".roc.png.p{os.getppid()}-zz.tmp"  # a writer still running: not ours to delete
    live.write_bytes(b"busy")
    with bundle_update(load_bundle(root)) as up:
        staged = up.stage("extra.onnx")
        assert staged.name.startswith(f".extra.onnx.p{os.getpid()}-")  # sweepable if this process dies
        staged.write_bytes(b"newer")
        up.add_artifact("extra.onnx", "onnx", "int8")
    assert not any(p.exists() for p in dead) and live.exists()
    load_bundle(root)
