"""ONNX Runtime runner (torch-free): runs model.onnx, model.fp16.onnx and the Q/DQ model.int8.onnx.

`providers="auto"` picks the best installed execution provider
(TensorRT > CUDA > CPU); the CPU provider is always there and is how the
FP16 and INT8 artifacts' accuracy is proven on machines without a GPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.engines.base import Runner, RunnerInfo, check_batch
from dsedge.errors import EngineError

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def best_providers(requested: str | list[str] = "auto") -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested == "auto":
        # The TensorRT EP compiles engines on first run (minutes); dsedge builds its own engines,
        # so "auto" stops at CUDA.
        order = [p for p in PREFERRED_PROVIDERS[1:] if p in available]
        return order or ["CPUExecutionProvider"]
    wanted = [requested] if isinstance(requested, str) else list(requested)
    missing = [p for p in wanted if p not in available]
    if missing:
        raise EngineError(
            f"ONNX Runtime provider(s) {', '.join(missing)} not available (have: {', '.join(available)})",
            hint="pip install 'dsedge[gpu]' for CUDA" if "CUDAExecutionProvider" in missing else None,
        )
    return wanted


def _as_bundle(bundle: Any) -> Any:
    """A loaded `Bundle` from a Bundle or a folder path (imported lazily; the runtime is torch-free)."""
    from dsedge.bundle import Bundle, load_bundle

    return bundle if isinstance(bundle, Bundle) else load_bundle(bundle)


class OrtRunner(Runner):
    """One `InferenceSession` over an ONNX file; input `input`, first output = logits."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        precision: str = "fp32",
        providers: str | list[str] = "auto",
        threads: int | None = None,
        output: str | None = None,
        allow_spinning: bool = True,
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if not allow_spinning:
            # Idle intra-op threads busy-wait for the next run by default. Benchmarks that
            # interleave several sessions in one process (A, B, A, B, ...) must turn that off,
            # or the idle session's spinning threads steal the cores from the running one.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._providers = best_providers(providers)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=self._providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise EngineError(f"ONNX Runtime cannot load {path}: {e}") from e
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = output or self.session.get_outputs()[0].name
        self.path = path
        self._info = RunnerInfo(
            backend="onnxruntime",
            precision=precision,
            device="cuda" if self._providers[0] != "CPUExecutionProvider" else "cpu",
            version=ort.__version__,
            extra={"provider": self._providers[0], "threads": threads or "default", "file": path.name,
                   "spin_wait": allow_spinning},
        )

    @classmethod
    def from_bundle(
        cls, bundle: Any, precision: str, *, device: str = "auto", threads: int | None = None,
        providers: str | list[str] | None = None, interleaved: bool = False, output: str | None = None,
    ) -> OrtRunner:
        """The bundle's ONNX file for `precision` (registry entry point).

        `interleaved=True` (the bench times several sessions in turn) turns intra-op
        spin-waiting off, see `allow_spinning`. `device="cpu"` pins the CPU provider.
        """
        bundle = _as_bundle(bundle)
        path = bundle.onnx(precision)  # the artifact table's file, or a BundleError listing what it has
        if providers is None:
            providers = "CPUExecutionProvider" if device == "cpu" else "auto"
        return cls(path, precision, providers=providers, threads=threads, output=output,
                   allow_spinning=not interleaved)

    @property
    def info(self) -> RunnerInfo:
        return self._info

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = check_batch(batch)
        (out,) = self.session.run([self.output_name], {self.input_name: x})
        return np.asarray(out, dtype=np.float32)

    def infer_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every graph output of one call by name (logits, and `cam` when exported with --cam)."""
        x = check_batch(batch)
        names = [o.name for o in self.session.get_outputs()]
        values = self.session.run(names, {self.input_name: x})
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values, strict=True)}

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
