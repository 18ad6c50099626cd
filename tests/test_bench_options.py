"""Backend options "backend.key=value" are checked against the registry's declared names and types."""

from __future__ import annotations

import pytest

from dsedge.bench.options import backend_options, split_list
from dsedge.errors import DsedgeError


def test_options_parse_to_declared_types() -> None:
    opts = backend_options(["torch-compile.mode=max-autotune", "torch-compile.freezing=false",
                            "torch.channels_last=yes", "openvino.static_shapes=0", "torch.seed=3"])
    assert opts == {"torch-compile": {"mode": "max-autotune", "freezing": False},
                    "torch": {"channels_last": True, "seed": 3}, "openvino": {"static_shapes": False}}
    assert backend_options([]) == {}


def test_bad_options_are_errors_with_hints() -> None:
    with pytest.raises(DsedgeError, match="BACKEND.KEY=VALUE"):
        backend_options(["freezing=true"])
    with pytest.raises(DsedgeError, match="unknown backend: tflite"):
        backend_options(["tflite.x=1"])
    with pytest.raises(DsedgeError, match="has no option 'turbo'") as err:
        backend_options(["openvino.turbo=1"])
    assert "static_shapes (bool)" in (err.value.hint or "")
    with pytest.raises(DsedgeError, match="expected true or false"):
        backend_options(["torch.channels_last=maybe"])
    with pytest.raises(DsedgeError, match="expected int"):
        backend_options(["torch.seed=x"])


def test_split_list() -> None:
    assert split_list("A, b,a", "things", ["a", "b"]) == ["a", "b"]
    with pytest.raises(DsedgeError, match="no things"):
        split_list(" , ", "things", ["a"])
    with pytest.raises(DsedgeError, match="unknown things: c"):
        split_list("c", "things", ["a"])
