"""User-facing errors.

Every failure a user can cause (bad data, wrong file, missing package) raises a
`DsedgeError` subclass with a message that names the file and, where we know it,
a hint on how to fix it. The CLI turns these into a red message and a non-zero
exit code instead of a traceback. This module must stay torch-free.
"""

from __future__ import annotations

import os


class DsedgeError(Exception):
    """Base class: an error the user can act on.

    `hint` is an optional second line telling the user what to do next.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class DataError(DsedgeError):
    """A dataset, CSV or image cannot be used."""


class ModelError(DsedgeError):
    """Unknown model name, missing pretrained weights, incompatible state dict."""


class CheckpointError(DsedgeError):
    """A checkpoint is missing, corrupt or belongs to another model."""


class BundleError(DsedgeError):
    """A bundle or one of its artifacts is missing, tampered with or incompatible."""


class ExportError(DsedgeError):
    """ONNX export or its parity check failed."""


class CalibrationError(DsedgeError):
    """INT8 calibration cannot run or missed its accuracy budget."""


class EngineError(DsedgeError):
    """A runtime/backend is unavailable or refused an engine."""


class MissingDependencyError(EngineError):
    """An optional package (tensorrt, openvino, cuda-python, ...) is not installed."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        what = f" ({purpose})" if purpose else ""
        hint = f"pip install 'dsedge[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"the Python package '{package}' is not installed{what}", hint)
        self.package = package
        self.extra = extra


def debug_enabled() -> bool:
    """DSEDGE_DEBUG=1 / true / yes (any case) shows full tracebacks; 0, false, no or empty do not.

    It used to be any non-empty value, so `DSEDGE_DEBUG=0` turned tracebacks on (and exit 3 into 1).
    """
    return os.environ.get("DSEDGE_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
