"""Atomic updates of an existing bundle: new artifacts and manifest keys land together or not at all.

A bundle is many files plus one manifest that lists each file's sha256, and
two files cannot be renamed in one step. Writing a new `model.int8.onnx` over
the old one and then saving the manifest leaves, after a Ctrl-C or a kill in
between, a listed file whose hash no longer matches: `load_bundle` then
refuses the whole bundle, FP32 model included (issue 14). The update is
therefore done in three steps, each of which leaves a loadable bundle:

1. *stage*: new files are written to hidden temporary names in the bundle
   folder (nothing listed changes);
2. *retire*: the manifest is saved without the entries and keys about to be
   replaced (the old files are now unlisted, so their content no longer matters);
3. *swap and publish*: the staged files are renamed onto their final names,
   then the manifest is saved with the new entries and keys.

A crash before step 2 leaves the old bundle; between 2 and 3 a bundle without
the replaced artifact (re-run the step that makes it); after 3 the new one.
Staged files are removed on any failure. Used by `dsedge calibrate` and
`dsedge risk`; fit for `dsedge build --force` too. Torch-free.

Both manifest saves go through `Bundle.save`, which seals the manifest
(`dsedge.bundle.write_manifest`): a writer never seals by hand. Staged names
carry the writer's pid (`.NAME.p<pid>-XXXX.tmp`), and every update first
sweeps the leftovers of killed writers (`dsedge.utils.io.sweep_stale_temps`),
so a kill mid-update leaves nothing behind for good.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsedge.bundle.core import Bundle
from dsedge.utils.io import current_umask, sweep_stale_temps, temp_prefix


@dataclass
class BundleUpdate:
    """The pending changes of one update; build it with `bundle_update(bundle)`."""

    bundle: Bundle
    staged: dict[str, Path] = field(default_factory=dict)
    entries: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    keys: dict[str, Any] = field(default_factory=dict)
    dropped_keys: set[str] = field(default_factory=set)

    def stage(self, filename: str) -> Path:
        """A hidden temporary path in the bundle folder to write `filename`'s new content to."""
        if filename in self.staged:
            return self.staged[filename]
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(filename), suffix=".tmp", dir=self.bundle.root)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the artifact from a Triton container
        self.staged[filename] = Path(tmp)
        return self.staged[filename]

    def add_artifact(self, filename: str, kind: str, precision: str, **extra: Any) -> None:
        """List the staged `filename` as an artifact once the update commits."""
        if filename not in self.staged:
            raise ValueError(f"stage {filename} before listing it")
        self.entries[filename] = (kind, precision, extra)

    def remove_artifact(self, filename: str) -> None:
        """Unlist `filename` and delete its file at commit (a no-op if it is not there)."""
        self.removed.add(filename)

    def set_key(self, key: str, value: Any) -> None:
        """Set a top-level manifest key (e.g. `calibration`) at commit."""
        self.keys[key] = value
        self.dropped_keys.discard(key)

    def drop_key(self, key: str) -> None:
        self.dropped_keys.add(key)
        self.keys.pop(key, None)

    def commit(self) -> None:
        """Retire, swap, publish (see the module docstring)."""
        b = self.bundle
        replaced = set(self.staged) | self.removed
        for name in replaced:
            b.artifacts.pop(name, None)
        for key in set(self.keys) | self.dropped_keys:
            b.manifest.pop(key, None)
        b.save()  # retire: every listed file is untouched from here on
        for name in self.removed - set(self.staged):
            (b.root / name).unlink(missing_ok=True)
        for name, tmp in self.staged.items():
            os.replace(tmp, b.root / name)
        self.staged.clear()
        for name, (kind, precision, extra) in self.entries.items():
            b.add_artifact(name, kind, precision, **extra)
        b.manifest.update(self.keys)
        b.save()  # publish

    def discard(self) -> None:
        for tmp in self.staged.values():
            tmp.unlink(missing_ok=True)
        self.staged.clear()


@contextlib.contextmanager
def bundle_update(bundle: Bundle) -> Iterator[BundleUpdate]:
    """Collect changes inside the block; commit them atomically on success, discard staged files on failure.

    A failure during the commit's publish step (after the swap) leaves the
    renamed files in place but unlisted: the bundle still loads.
    """
    sweep_stale_temps(bundle.root)  # what a killed calibrate / risk staged
    update = BundleUpdate(bundle)
    try:
        yield update
        update.commit()
    finally:
        update.discard()
