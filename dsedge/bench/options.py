"""Parsing the bench's list arguments and per-backend options ("backend.key=value") against the registry.

Backend options let a user try what makes a backend fastest without a new flag
per idea — e.g. ``torch-compile.mode=max-autotune``,
``torch-compile.freezing=false``, ``torch.channels_last=true``,
``openvino.static_shapes=false`` — each checked against the option names and
types the backend declares in the registry, so a typo is an error, not a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dsedge.engines import registry
from dsedge.errors import DsedgeError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def split_list(value: Sequence[str] | str, what: str, allowed: Sequence[str]) -> list[str]:
    """Comma-separated (or listed) names, lower-cased, de-duplicated, each one of `allowed`."""
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if not items:
        raise DsedgeError(f"no {what} given", f"choose from: {', '.join(allowed)}")
    bad = [v for v in items if v not in allowed]
    if bad:
        raise DsedgeError(f"unknown {what}: {', '.join(bad)}", f"choose from: {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _convert(text: str, kind: type, where: str) -> Any:
    if kind is bool:
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise DsedgeError(f"{where}: expected true or false, got {text!r}")
    try:
        return kind(text)
    except ValueError as e:
        raise DsedgeError(f"{where}: expected {kind.__name__}, got {text!r}") from e


def backend_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """["torch-compile.mode=max-autotune", ...] -> {"torch-compile": {"mode": "max-autotune"}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        backend, dot, key = name.strip().rpartition(".")
        if not eq or not dot:
            raise DsedgeError(f"option {item!r} is not BACKEND.KEY=VALUE", "e.g. torch-compile.mode=max-autotune")
        spec = registry.get(backend)
        if key not in spec.options:
            known = ", ".join(f"{k} ({t.__name__})" for k, t in spec.options.items()) or "none"
            raise DsedgeError(f"backend {backend} has no option {key!r}", f"its options: {known}")
        out.setdefault(backend, {})[key] = _convert(value, spec.options[key], item)
    return out
