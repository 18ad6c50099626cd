"""Which TensorRT may run a plan built by which: NVIDIA's compatibility rules in one place (DESIGN §5).

By default a plan runs only on the exact TensorRT that built it — patch
version included; a 10.3.0 plan is refused by 10.3.1. A plan built with
`BuilderFlag.VERSION_COMPATIBLE` (TensorRT >= 8.6) carries its lean runtime and
runs on the same or any later version of the same major, and across exactly
two major boundaries NVIDIA supports: 8.x -> 10.x and 10.x -> 11.x (TensorRT
11 support matrix, "Engine Portability"). The runner, the Triton export and the
builder's manifest all use these functions, so the rule is written once.
Torch-free and TensorRT-free (pure string logic).
"""

from __future__ import annotations

from dsedge.errors import EngineError

#: (built major, running major) pairs a version-compatible plan may cross.
CROSS_MAJOR = {(8, 10), (10, 11)}
#: The oldest TensorRT that can build a version-compatible plan.
FIRST_VERSION_COMPATIBLE = (8, 6)


def version_tuple(version: str) -> tuple[int, ...]:
    """(10, 3, 0, 30) from "10.3.0.30"; a suffix like "11.0.0b1" keeps its leading digits."""
    parts: list[int] = []
    for piece in str(version).split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise EngineError(f"cannot parse TensorRT version {version!r}")
    return tuple(parts)


def major_minor(version: str) -> tuple[int, int]:
    parts = version_tuple(version)
    return parts[0], parts[1] if len(parts) > 1 else 0


def same_release(built: str, running: str) -> bool:
    """True when both strings name the same TensorRT release: every component both give, at least
    major.minor.patch ("10.3.0.30" == "10.3.0.30", "10.3.0" == "10.3.0.30", "10.3.0" != "10.3.1")."""
    b, r = version_tuple(built), version_tuple(running)
    n = max(3, min(len(b), len(r)))
    pad = (0,) * 4
    return (b + pad)[:n] == (r + pad)[:n]


def version_compatible_runs(built: str, running: str) -> bool:
    """Whether a version-compatible plan from `built` deserializes on `running`."""
    b, r = version_tuple(built), version_tuple(running)
    if b[:2] < FIRST_VERSION_COMPATIBLE or r < b[: len(r)]:
        return False
    return b[0] == r[0] or (b[0], r[0]) in CROSS_MAJOR


def version_mismatch(built: str, running: str, version_compatible: bool) -> str | None:
    """Why a plan built by TensorRT `built` cannot run on `running`, or None when it can."""
    if version_compatible:
        if version_compatible_runs(built, running):
            return None
        b_major = version_tuple(built)[0]
        majors = " or ".join(f"{m}.x" for m in sorted({b_major} | {r for b, r in CROSS_MAJOR if b == b_major}))
        return (
            f"it is a version-compatible engine from TensorRT {built}, which runs only on TensorRT "
            f"{majors} >= {built}; this is TensorRT {running}"
        )
    if same_release(built, running):
        return None
    return (
        f"it was built with TensorRT {built} and this is TensorRT {running} "
        "(a plan runs only on the TensorRT release that built it, patch version included)"
    )
