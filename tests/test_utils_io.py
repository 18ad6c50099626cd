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


# ----------------------------------------------------------------------------- issue 26: full disks, leftovers, names

SAFETENSORS_FULL = ('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                    '"No space left on device" })')


def test_a_library_full_disk_becomes_enospc_naming_the_target(tmp_path: Path) -> None:
    """safetensors wraps ENOSPC in SafetensorError: `train` exited 3; now it is the OSError the CLI knows."""
    import errno

    from safetensors import SafetensorError

    with pytest.raises(OSError) as e:
        with atomic_path(tmp_path / "last.safetensors"):
            raise SafetensorError(SAFETENSORS_FULL)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "last.safetensors")
    assert not list(tmp_path.iterdir())


def test_write_errors_name_the_users_file_not_the_temporary(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    def denied(src, dst):  # noqa: ANN001, ANN202
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(PermissionError) as e:
        atomic_write_json(tmp_path / "results.csv", {"a": 1})
    assert e.value.filename == str(tmp_path / "results.csv")
    assert not list(tmp_path.iterdir())


def test_is_disk_full() -> None:
    import errno

    from dsedge.utils.io import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "x")) and is_disk_full(RuntimeError(SAFETENSORS_FULL))
    assert not is_disk_full(OSError(errno.EACCES, "x")) and not is_disk_full(KeyboardInterrupt())


def test_ensure_writable(tmp_path: Path, monkeypatch) -> None:
    """Read-only and full folders fail up front (exit 2) naming the folder; missing ones are left to the command."""
    import errno
    import shutil
    import tempfile
    from collections import namedtuple

    from dsedge.errors import DsedgeError
    from dsedge.utils.io import ensure_writable

    ensure_writable(tmp_path, tmp_path / "missing", need_bytes=1)
    assert not list(tmp_path.iterdir())  # the probe file is gone
    real = tempfile.mkstemp

    def read_only(*a, **k):  # noqa: ANN002, ANN003, ANN202
        if k.get("dir") == tmp_path / "ro":
            raise OSError(errno.EROFS, "Read-only file system", str(k["dir"]) + "/.x.tmp")
        return real(*a, **k)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(DsedgeError, match=f"cannot write into folder {tmp_path / 'ro'}: Read-only file system"):
        ensure_writable(tmp_path, tmp_path / "ro")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    with pytest.raises(DsedgeError, match=f"not enough free space for folder {tmp_path}: 1 MiB free, 256 MiB"):
        ensure_writable(tmp_path)
    with pytest.raises(DsedgeError, match="not enough free space"):
        ensure_writable(tmp_path / "missing", with_temp_dir=True)  # the system temp folder is checked too


def test_sweep_removes_every_dead_writers_temp_in_a_folder(tmp_path: Path) -> None:
    import os

    from dsedge.utils.io import sweep_stale_temps, temp_prefix

    dead = [tmp_path / ".model.int8.onnx.p999999999-ab12.tmp", tmp_path / ".roc.png.p999999998-x.tmp"]
    for p in dead:
        p.write_bytes(b"half")
    live = tmp_path / f".MODEL_CARD.md.p{os.getppid()}-cd.tmp"
    live.write_text("x")
    mine = tmp_path / f"{temp_prefix('a.json')}zz.tmp"
    mine.write_text("x")
    (tmp_path / "model.onnx").write_text("keep")
    assert sorted(sweep_stale_temps(tmp_path)) == sorted(dead)
    assert live.exists() and mine.exists() and (tmp_path / "model.onnx").exists()
