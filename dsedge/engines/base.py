"""The runner interface every backend implements (compare Polygraphy's runners).

A runner loads one artifact (a torch model, an ONNX file, a TensorRT plan),
takes a preprocessed float32 NCHW batch as a NumPy array and returns float32
logits of shape (N, num_classes). Bench, calibration, parity checks and the
device runtime all talk to backends only through this interface, so they can
run several backends on the same data and compare them. Torch-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dsedge.stats import softmax  # noqa: F401 - re-exported: runners, bench and calibration import it here

#: Key of the logits in `Runner.infer_all` when a runner has no graph output names.
LOGITS = "logits"


@dataclass
class RunnerInfo:
    """What a runner is: shown in bench tables and stored with results."""

    backend: str  # "torch", "torch-compile", "onnxruntime", "openvino", "tensorrt"
    precision: str  # "fp32", "fp16", "bf16", "int8"
    device: str  # "cpu", "cuda:0", "NVIDIA H100 80GB HBM3", ...
    version: str  # library version
    extra: dict[str, Any] = field(default_factory=dict)  # provider, threads, engine profile...

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runner(ABC):
    """Base class: `infer(batch) -> logits`, `infer_all(batch) -> {output: array}`. A context manager."""

    #: Largest batch the runner accepts in one call (None: unlimited). TensorRT sets the profile max.
    max_batch: int | None = None

    @property
    @abstractmethod
    def info(self) -> RunnerInfo:
        """Backend, precision, device and version of this runner."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (float32, N x 3 x H x W, already normalised) and return float32 logits."""

    def infer_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of one call, by graph output name (Polygraphy's `infer() -> dict`).

        A bundle exported with `--cam` has a second output; runners whose artifact can
        hold several outputs override this. The default is the logits alone, under
        `LOGITS`, for runners that have nothing else (PyTorch eager, test doubles).
        """
        return {LOGITS: self.infer(batch)}

    def synchronize(self) -> None:  # noqa: B027 - optional hook, CPU runners need nothing
        """Wait for queued device work (GPU runners); a no-op on CPU. Latency timing calls it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions, device buffers, streams."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- optional abilities: typed protocols instead of getattr probing -----------------------------


@runtime_checkable
class DeviceTimed(Protocol):
    """A runner that can time itself with device events (CUDA events around copies and compute).

    `has_device_timer` says whether it can on the device it runs on (a CPU-placed
    TorchRunner has the method but no events to time with).
    """

    @property
    def has_device_timer(self) -> bool: ...

    def device_timings(
        self, batch: np.ndarray, iters: int, *, warmup: int = 3, include_copies: bool = True,
        cuda_graph: bool = False,
    ) -> np.ndarray: ...


@runtime_checkable
class ResidentInputs(Protocol):
    """A runner that can rerun on inputs already in device memory (trtexec's `--noDataTransfers`)."""

    def run_resident(self, batch_size: int) -> None: ...


@runtime_checkable
class FirstCallTimed(Protocol):
    """A runner whose first call per batch size compiles (torch.compile): seconds per batch size."""

    @property
    def first_call_seconds(self) -> dict[int, float]: ...


def check_batch(batch: np.ndarray, channels: int = 3) -> np.ndarray:
    """Validate and normalise an input batch: float32, contiguous, N x C x H x W."""
    arr = np.asarray(batch)
    if arr.ndim != 4 or arr.shape[1] != channels:
        raise ValueError(f"expected a batch N x {channels} x H x W, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def predict_probs(
    runner: Runner,
    images: np.ndarray,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    *,
    pad: bool = True,
) -> np.ndarray:
    """Class probabilities (float32 softmax of the logits) of every image, in chunks of `batch_size`.

    A runner with a profile limit (`max_batch`) gets chunks no larger than it. With
    `pad`, the last chunk is zero-padded to the full size, so shape-specialised
    backends (torch.compile, TensorRT profiles) see one shape and do not recompile;
    `pad=False` runs it at its own size. `progress(n)` is told after every chunk how
    many images it covered.
    """
    step = min(batch_size, runner.max_batch) if runner.max_batch else batch_size
    step = max(1, min(step, len(images)))
    out = []
    for i in range(0, len(images), step):
        chunk = images[i : i + step]
        n = len(chunk)
        if pad and n < step:
            chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), dtype=chunk.dtype)])
        out.append(softmax(runner.infer(chunk))[:n])
        if progress is not None:
            progress(n)
    return np.concatenate(out).astype(np.float32)
