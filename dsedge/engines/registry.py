"""The backend registry: one entry per backend, read by the bench, the runtime, `dsedge predict` and `dsedge doctor`.

Each entry says what a backend is — its name, the precisions it runs, the
bundle artifact it needs, the device it runs on, whether the torch-free
runtime (`dsedge predict`, `dsedge.runtime.Predictor`) can deploy it, the
packages it needs — and how to build a runner: one uniform
``from_bundle(bundle, precision, **options)``. Adding a backend is one runner
module plus one `register(Backend(...))` call (compare Ultralytics' format
table and Polygraphy's runners); the bench rows, doctor, `dsedge predict
--backend` and the runtime's `auto` choice follow. `auto` tries the
`runtime=True` entries that have an `auto_rank`, lowest first (TensorRT, then
ONNX Runtime); the others are chosen by name.

Why lazy: the factories are named as ``"module:attr"`` strings and imported
only when a runner is built, and package checks use `importlib.util.find_spec`,
so importing this module (from the runtime, from doctor) never imports torch,
OpenVINO or TensorRT.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dsedge.engines.base import Runner
from dsedge.errors import DsedgeError, EngineError, MissingDependencyError

#: Options every backend's `from_bundle` receives (each uses what applies to it).
COMMON_OPTIONS: Mapping[str, type] = MappingProxyType(
    {"threads": int, "device": str, "interleaved": bool, "output": str})
ARTIFACTS = ("checkpoint", "onnx", "tensorrt")  # what a backend loads: the PyTorch weights or a bundle file
DEVICES = ("cpu", "cuda", "any")


def _importable(module: str) -> bool:
    """True when `module` can be imported, without importing it (a `None` in sys.modules means blocked)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Backend:
    """One backend: its facts and its runner factory (a callable or a lazily imported "module:attr")."""

    name: str
    precisions: tuple[str, ...]
    artifact: str
    factory: str | Callable[..., Runner]
    device: str = "any"
    runtime: bool = False  # the torch-free runtime can deploy it: the bench headline may name it
    requires: tuple[str, ...] = ()  # importable modules it needs, checked without importing them
    extra: str | None = None  # the pip extra that installs them
    options: Mapping[str, type] = field(default_factory=dict)  # backend options beyond COMMON_OPTIONS
    fixed: Mapping[str, Any] = field(default_factory=dict)  # options always passed (torch-compile: compile=True)
    description: str = ""
    #: Place in the runtime's `auto` order (lower first); None: chosen by name only.
    auto_rank: int | None = None
    #: Precisions the runtime tries, in order, when none is asked (empty: `precisions`). It may name
    #: precisions the bench does not row (TensorRT fp32 engines from `dsedge build --precision fp32`).
    prefer: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.artifact not in ARTIFACTS:
            raise ValueError(f"backend {self.name}: artifact must be one of {ARTIFACTS}, got {self.artifact!r}")
        if self.device not in DEVICES:
            raise ValueError(f"backend {self.name}: device must be one of {DEVICES}, got {self.device!r}")

    @property
    def runs(self) -> tuple[str, ...]:
        """Every precision `from_bundle` accepts: the bench's rows and the runtime's preferences."""
        return tuple(dict.fromkeys((*self.prefer, *self.precisions)))

    @property
    def preference(self) -> tuple[str, ...]:
        return self.prefer or self.precisions

    def missing(self) -> list[str]:
        """The required modules that are not installed."""
        return [m for m in self.requires if not _importable(m)]

    def availability(self) -> tuple[bool, str]:
        """(installed, why not): a package check only; devices and artifacts are checked when building."""
        missing = self.missing()
        if missing:
            how = f"pip install 'dsedge[{self.extra}]'" if self.extra else f"pip install {' '.join(missing)}"
            return False, f"{', '.join(missing)} not installed ({how})"
        return True, ""

    def load_factory(self) -> Callable[..., Runner]:
        if callable(self.factory):
            return self.factory
        module, _, attr = self.factory.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def accepts(self, option: str) -> bool:
        return option in COMMON_OPTIONS or option in self.options

    def from_bundle(self, bundle: Any, precision: str, **options: Any) -> Runner:
        """A runner for `precision` on `bundle`; options it does not know are dropped (callers pass one set).

        Raises `MissingDependencyError` when a package is missing and `EngineError`
        for a precision or device the backend does not run.
        """
        if precision not in self.runs:
            raise EngineError(f"{self.name} does not run {precision}", f"it runs: {', '.join(self.runs)}")
        missing = self.missing()
        if missing:
            raise MissingDependencyError(missing[0], self.extra, f"the {self.name} backend")
        device = str(options.get("device") or "auto")
        if self.device == "cpu" and device.startswith("cuda"):
            raise EngineError(f"{self.name} runs on CPUs; this run benches {device} (use --device cpu)")
        if self.device == "cuda" and device == "cpu":
            raise EngineError(f"{self.name} needs a CUDA GPU and --device cpu was given")
        kwargs = {k: v for k, v in options.items() if self.accepts(k)}
        return self.load_factory()(bundle, precision, **{**kwargs, **self.fixed})


_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend, *, replace: bool = False) -> Backend:
    """Add a backend (in order: the bench runs them in registration order after the reference)."""
    if backend.name in _REGISTRY and not replace:
        raise ValueError(f"backend {backend.name!r} is already registered")
    _REGISTRY[backend.name] = backend
    return backend


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> Backend:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DsedgeError(f"unknown backend: {name}", f"choose from: {', '.join(_REGISTRY)}") from None


def backends() -> list[Backend]:
    return list(_REGISTRY.values())


def names() -> list[str]:
    return list(_REGISTRY)


def runtime_backends() -> list[Backend]:
    """The backends the torch-free runtime can deploy (`dsedge predict --backend`), in registration order."""
    return [b for b in _REGISTRY.values() if b.runtime]


def auto_order(precision: str | None = None) -> list[Backend]:
    """What `auto` tries, in order: runtime backends with an `auto_rank` (that run `precision`, if given)."""
    ranked = [b for b in runtime_backends() if b.auto_rank is not None and (precision is None or precision in b.runs)]
    return sorted(ranked, key=lambda b: b.auto_rank)  # type: ignore[arg-type, return-value]


def _tensorrt_from_bundle(bundle: Any, precision: str, *, device: str = "auto", cuda_graph: bool = True,
                          split: bool = False, output: str | None = None, **_: Any) -> Runner:
    """TensorRT adapter: the device string -> the GPU index `TrtRunner.from_bundle` takes.

    The bench times whole batches (`split=False`: a batch above the profile is an
    error); the runtime lets the runner split them.
    """
    from dsedge.engines.trt_runner import TrtRunner

    index = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
    return TrtRunner.from_bundle(bundle, precision, device=index, cuda_graph=cuda_graph, split=split, output=output)


_TORCH_OPTIONS = {"checkpoint": str, "channels_last": bool, "seed": int}
_COMPILE_OPTIONS = {**_TORCH_OPTIONS, "mode": str, "freezing": bool, "autocast": bool}

register(Backend(
    "torch", ("fp32", "fp16", "bf16"), "checkpoint", "dsedge.engines.torch_runner:TorchRunner.from_bundle",
    requires=("torch",), options=_TORCH_OPTIONS, description="PyTorch eager (the FP32 reference)"))
register(Backend(
    "torch-compile", ("fp32", "fp16", "bf16"), "checkpoint", "dsedge.engines.torch_runner:TorchRunner.from_bundle",
    requires=("torch",), options=_COMPILE_OPTIONS, fixed={"compile": True},
    description="torch.compile (inductor; CPU: frozen weights)"))
register(Backend(
    "onnxruntime", ("fp32", "fp16", "int8"), "onnx", "dsedge.engines.ort_runner:OrtRunner.from_bundle",
    runtime=True, requires=("onnxruntime",), options={"providers": str}, auto_rank=20, prefer=("fp32", "fp16", "int8"),
    description="ONNX Runtime (CPU; CUDA with onnxruntime-gpu)"))
register(Backend(
    "openvino", ("fp32", "bf16", "int8"), "onnx", "dsedge.engines.openvino_runner:OpenVinoRunner.from_bundle",
    device="cpu", runtime=True, requires=("openvino",), extra="openvino", options={"static_shapes": bool},
    description="OpenVINO CPU plugin (bf16 on AVX512-BF16/AMX, INT8 from the Q/DQ file)"))
register(Backend(
    "tensorrt", ("fp16", "int8"), "tensorrt", _tensorrt_from_bundle, device="cuda", runtime=True,
    requires=("tensorrt", "cuda"), extra="tensorrt", options={"cuda_graph": bool, "split": bool},
    auto_rank=10, prefer=("fp16", "int8", "fp32"), description="TensorRT engine built on this GPU"))
