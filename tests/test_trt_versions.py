"""NVIDIA's plan compatibility rules: exact release by default, version-compatible plans forward (10.x -> 11.x)."""

from __future__ import annotations

import pytest

from dsedge.engines.trt_versions import (
    same_release,
    version_compatible_runs,
    version_mismatch,
    version_tuple,
)
from dsedge.errors import EngineError


def test_version_tuple() -> None:
    assert version_tuple("10.3.0.30") == (10, 3, 0, 30)
    assert version_tuple("11.0.0b1") == (11, 0, 0)
    with pytest.raises(EngineError, match="cannot parse"):
        version_tuple("dev")


@pytest.mark.parametrize("built,running,same", [
    ("10.3.0.30", "10.3.0.30", True), ("10.3.0", "10.3.0.30", True), ("10.3.0.30", "10.3.1.4", False),
    ("10.3.0.30", "10.3.0.26", False), ("10.3", "10.3.1", False), ("10.3.0", "10.4.0", False),
])
def test_same_release_compares_the_patch_version(built: str, running: str, same: bool) -> None:
    assert same_release(built, running) is same
    assert (version_mismatch(built, running, False) is None) is same


@pytest.mark.parametrize("built,running,ok", [
    ("10.3.0.30", "10.3.0.30", True), ("10.3.0.30", "10.13.3.9", True), ("10.3.0.30", "11.0.0", True),
    ("10.3.0.30", "10.1.0", False), ("10.3.0.30", "12.0.0", False), ("8.6.1", "10.0.1", True),
    ("8.6.1", "11.0.0", False), ("8.5.3", "8.6.1", False), ("11.0.0", "11.4.0", True), ("11.1.0", "10.13.0", False),
])
def test_version_compatible_plans(built: str, running: str, ok: bool) -> None:
    assert version_compatible_runs(built, running) is ok
    why = version_mismatch(built, running, True)
    assert (why is None) is ok
    if not ok:
        assert "version-compatible engine" in why
