"""Atomic writes leave nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsedge.utils.io import atomic_dir, atomic_path, atomic_write_json, sha256_file


def test_atomic_path_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_atomic_dir_needs_force_and_keeps_old_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with atomic_dir(out) as d:
        (d / "a").write_text("1")
    with pytest.raises(FileExistsError):
        with atomic_dir(out) as d:
            (d / "a").write_text("2")
    with pytest.raises(RuntimeError):
        with atomic_dir(out, force=True) as d:
            (d / "a").write_text("3")
            raise RuntimeError("crash")
    assert (out / "a").read_text() == "1"
    with atomic_dir(out, force=True) as d:
        (d / "a").write_text("4")
    assert (out / "a").read_text() == "4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_json_and_hash(tmp_path: Path) -> None:
    import numpy as np

    p = tmp_path / "m.json"
    atomic_write_json(p, {"x": np.float32(1.5), "p": tmp_path})
    assert '"x": 1.5' in p.read_text()
    assert len(sha256_file(p)) == 64


def test_files_and_folders_honour_the_umask(tmp_path: Path) -> None:
    """mkstemp/mkdtemp make 0600/0700: another user or a Triton container could not read a bundle."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "m.json", {"a": 1})
        with atomic_dir(tmp_path / "bundle") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == 0o755


def test_leftovers_of_a_dead_writer_are_removed(tmp_path: Path) -> None:
    """A kill leaves `.NAME.p<pid>-X.tmp`; the next write of NAME removes it, a live writer's stays."""
    import os

    dead = tmp_path / ".bundle.p999999999-abc.tmp"  # no such pid
    dead.mkdir()
    live = tmp_path / f".bundle.p{os.getppid()}-abc.tmp"
    live.mkdir()
    with atomic_dir(tmp_path / "bundle") as d:
        (d / "x").write_text("1")
    assert not dead.exists() and live.exists()
