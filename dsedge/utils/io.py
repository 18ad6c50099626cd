"""Atomic file writes and hashing (torch-free).

Every artifact dsedge writes goes through these helpers: data lands in a
temporary file in the same directory and is renamed into place, so a crash or
Ctrl-C never leaves a half-written checkpoint, ONNX file or manifest behind.

Permissions: `mkstemp`/`mkdtemp` create 0600 files and 0700 folders whatever
the umask, so a bundle written that way could not be read by another user or a
Triton container. Every temporary is given the mode a plain `open()`/`mkdir()`
would have (0666/0777 minus the umask) before it is renamed into place.

Leftovers: temporaries carry the writer's pid (`.NAME.p<pid>-XXXX.tmp`); the
next write of the same target removes those whose process is gone, so a kill
does not leave hidden folders behind for good. `sweep_stale_temps(folder)` does
the same for a whole folder (a bundle update stages several files at once).

Errors: an `OSError` escaping a write names the user's file, never the hidden
temporary (issue 26: "permission denied: .results.csv.p123-ab.tmp"); a library
that reports a full disk in its own exception type (safetensors) is turned into
the `OSError(ENOSPC)` the CLI knows.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dsedge.errors import DsedgeError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (engines and ONNX files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is process-wide)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_prefix(target: Path) -> str:
    return temp_prefix(target.name)


def temp_prefix(name: str) -> str:
    """Prefix of this process's temporaries for file `name`: `.NAME.p<pid>-` (sweepable once the pid is gone)."""
    return f".{name}.p{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_writers(candidates: list[Path], pid_of: Callable[[Path], str]) -> list[Path]:
    """Remove each temp whose writer pid (`pid_of(path)`) is not this process and no longer runs."""
    removed: list[Path] = []
    for p in candidates:
        pid_text = pid_of(p)
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def clean_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove `.NAME.p<pid>-*.tmp` leftovers of `target` whose writer process no longer runs."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return _remove_dead_writers(list(target.parent.glob(f".{glob_escape(target.name)}.p*-*.tmp")),
                                lambda p: p.name[len(target.name) + 3:].split("-", 1)[0])


def sweep_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove every `.*.p<pid>-*.tmp` in `folder` whose writer process no longer runs (a kill's leftovers)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return _remove_dead_writers(list(folder.glob(".*.p*-*.tmp")),
                                lambda p: p.name[:-len(".tmp")].rsplit(".p", 1)[-1].split("-", 1)[0])


def glob_escape(name: str) -> str:
    """`name` with glob metacharacters escaped."""
    import glob

    return glob.escape(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` on success.

    Use for libraries that insist on writing to a file name themselves
    (onnx.save, safetensors.save_file, matplotlib's savefig).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    with user_path_in_errors(target):
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with user_path_in_errors(target):
            yield tmp_path
            if tmp_path.exists():
                os.chmod(tmp_path, 0o666 & ~current_umask())
            os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def user_path_in_errors(target: Path) -> Iterator[None]:
    """Re-raise a write failure against `target` instead of a hidden temporary; a full disk as ENOSPC."""
    try:
        yield
    except OSError as e:
        name = Path(str(e.filename)).name if e.filename else ""
        if e.filename is None or (name.startswith(".") and name.endswith(".tmp")):
            raise OSError(e.errno, e.strerror or str(e), str(target)) from e
        raise
    except Exception as e:
        if is_disk_full(e):  # e.g. safetensors' SafetensorError("... No space left on device ...")
            raise OSError(errno.ENOSPC, "No space left on device", str(target)) from e
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def json_ready(obj: Any) -> Any:
    """`obj` as it reads back from `atomic_write_json` (numpy -> lists/floats, Path -> str, tuples -> lists)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    # numpy scalars/arrays and Paths show up in metrics and manifests.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Build a whole directory in a temporary sibling and move it into place at the end.

    Used by `dsedge export` so that a failed export leaves neither a partial
    bundle nor a damaged old one. With `force`, an existing directory is
    replaced only after the new one is complete.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
        if target.exists():
            if not force:
                raise FileExistsError(str(target))
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_dir(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail before a long run when `path` cannot become a writable folder.

    `eval` and `bench` used to find out only after the whole run that `--out`
    sits under a file; this check costs nothing and names the culprit.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise DsedgeError(f"{what} {out} is a file, not a folder", hint="choose a folder for --out")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DsedgeError(f"cannot create {what} folder {out}: {parent} is a file, not a folder",
                          hint="choose an --out path under a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DsedgeError(f"cannot create {what} folder {out}: {parent} is not writable",
                          hint="choose a folder you can write to")
    return out


#: What libraries that wrap the OS error in their own exception (safetensors, protobuf) say on a full disk.
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "os error 28", "os error 122")


def is_disk_full(e: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, also when a library reports it only in its message (safetensors)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e).lower()
    return any(t in text for t in _DISK_FULL_TEXT)


#: Free space `ensure_writable` asks for by default: a few copies of an FP32 DS-ResNet50 ONNX (~50 MB),
#: which INT8 calibration writes beside each other (inferred, augmented, quantized models).
DEFAULT_HEADROOM = 256 * 1024 * 1024


def ensure_writable(*folders: str | os.PathLike, need_bytes: int = DEFAULT_HEADROOM, what: str = "folder",
                    with_temp_dir: bool = False) -> None:
    """Fail in a second, not after a long run, when a folder cannot take new files.

    `calibrate` on a read-only bundle used to run for minutes and then exit 3; on
    a full disk ONNX Runtime wrote a truncated model and failed with a protobuf
    DecodeError. Each folder must exist, accept a new file (tried for real: a
    read-only mount or a root-owned folder both fail here), and have `need_bytes`
    free. `with_temp_dir` checks the system temporary folder too (where ONNX
    Runtime's calibration writes). A path that does not exist is left to the
    command's own check, which knows what it should be; a file stands for its folder.
    Raises a `DsedgeError` (exit 2) naming the folder.
    """
    for folder in [*folders, *([tempfile.gettempdir()] if with_temp_dir else [])]:
        path = Path(folder)
        if path.is_file():
            path = path.parent
        if not path.is_dir():
            continue
        try:
            fd, probe = tempfile.mkstemp(prefix=temp_prefix("write-check"), suffix=".tmp", dir=path)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise DsedgeError(f"cannot write into {what} {path}: {e.strerror or e}",
                              hint="make it writable (or copy it somewhere you can write), then re-run") from e
        free = shutil.disk_usage(path).free
        if free < need_bytes:
            raise DsedgeError(
                f"not enough free space for {what} {path}: {free / 2**20:.0f} MiB free, "
                f"{need_bytes / 2**20:.0f} MiB needed",
                hint="free disk space (or set TMPDIR to a bigger disk), then re-run")
