"""Build TensorRT engines from a bundle's ONNX artifacts, for TensorRT 10.x and 11.x (DESIGN §5).

The precision of an engine comes from the ONNX we feed the parser:
`model.onnx` (fp32), `model.fp16.onnx` (FP16 weights/activations, FP32 I/O,
SimAM reductions in FP32) and `model.int8.onnx` (explicit Q/DQ). How the
builder is told about it depends on the TensorRT major version, decided at
run time from `tensorrt.__version__`:

* TensorRT 11+: weak typing is gone (`BuilderFlag.FP16/INT8` were removed), so
  every network is strongly typed and no precision flag is ever set.
* TensorRT 10 (Jetson JetPack 6 ships 10.3): fp16 uses the FP16 builder flag on
  a weakly typed network by default (`strongly_typed=True` switches to the 11.x
  path); int8 builds the Q/DQ model strongly typed, as NVIDIA recommends for
  explicit quantization. `strongly_typed=False` on int8 gives the old
  weakly typed route with INT8+FP16 flags.

Every build uses an optimization profile min/opt/max on the batch dimension of
the input, a persistent timing cache (loaded, used, saved atomically), a
workspace limit and the builder optimization level, and can make a
version-compatible engine. The serialized engine lands atomically in the bundle
as `model.<precision>.<gpu-slug>.plan` with a manifest entry recording the
TensorRT version, GPU name, compute capability, precision, profile and sha256 —
what `TrtRunner` checks before it runs an engine.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any

from dsedge.engines.cuda_utils import DeviceInfo, device_info, gpu_slug
from dsedge.errors import BundleError, EngineError, MissingDependencyError
from dsedge.runtime.bundle import Bundle, load_bundle
from dsedge.utils.io import atomic_write_bytes, sha256_file

PRECISIONS = ("fp32", "fp16", "int8")
ONNX_FOR_PRECISION = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


def import_tensorrt() -> ModuleType:
    """`import tensorrt`, or a `MissingDependencyError` naming the package and the `tensorrt` extra."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as e:
        raise MissingDependencyError("tensorrt", "tensorrt", "building and running TensorRT engines") from e
    except OSError as e:  # installed, but its shared libraries (libnvinfer, CUDA) do not load
        raise EngineError(f"tensorrt is installed but cannot load: {e}", "check the CUDA/driver install; see `dsedge doctor`") from e
    return trt


def parse_version(version: str) -> tuple[int, int]:
    """(major, minor) of a version string like "10.3.0.30" or "11.4.0"."""
    parts = str(version).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError as e:
        raise EngineError(f"cannot parse TensorRT version {version!r}") from e


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}", f"use one of: {', '.join(PRECISIONS)}")
    return precision


def engine_filename(precision: str, gpu: DeviceInfo | str) -> str:
    """`model.<precision>.<gpu-slug>.plan`: one engine per precision and GPU model in a bundle."""
    slug = gpu.slug if isinstance(gpu, DeviceInfo) else gpu_slug(gpu)
    return f"model.{precision}.{slug}.plan"


def make_logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps warnings and errors, so a failed build can say why."""

    class _Logger(trt.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(str(msg))

        def tail(self, n: int = 5) -> str:
            return " | ".join(self.messages[-n:])

    return _Logger()


def _pick_onnx(bundle: Bundle, precision: str) -> Path:
    names = bundle.find("onnx", precision)
    canonical = ONNX_FOR_PRECISION[precision]
    if canonical in names:
        return bundle.path(canonical)
    return bundle.require("onnx", precision)  # another name, or a clear BundleError with a hint


def _check_profile(min_batch: int, opt_batch: int, max_batch: int) -> None:
    if not (1 <= min_batch <= opt_batch <= max_batch):
        raise EngineError(
            f"invalid batch profile min={min_batch} opt={opt_batch} max={max_batch}",
            "need 1 <= --min-batch <= --opt-batch <= --max-batch",
        )


def _network_flags(trt: ModuleType, strongly_typed: bool) -> int:
    if not strongly_typed:
        return 0
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def _typing_plan(major: int, precision: str, strongly_typed: bool | None) -> tuple[bool, list[str]]:
    """(strongly typed network?, builder precision flags) for this TensorRT major version."""
    if major >= 11:
        if strongly_typed is False:
            raise EngineError(
                "TensorRT 11 removed weakly typed networks; strongly_typed=False is not possible",
                "drop --weakly-typed; precision comes from the ONNX file",
            )
        return True, []
    if strongly_typed is None:
        strongly_typed = precision == "int8"  # Q/DQ: explicit quantization wants strong typing
    if strongly_typed or precision == "fp32":
        return strongly_typed, []
    return False, ["FP16"] if precision == "fp16" else ["INT8", "FP16"]


def _sample_dims(network: Any, bundle: Bundle, input_name: str) -> list[int]:
    """C, H, W of the network input; dynamic H/W fall back to the manifest's crop size."""
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name == input_name:
            dims = [int(d) for d in tuple(tensor.shape)[1:]]
            break
    else:
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        raise EngineError(f"the ONNX model has no input named {input_name!r} (inputs: {names})")
    crop = int(bundle.preprocessing.get("crop", 224))
    fallback = [3, crop, crop]
    return [d if d > 0 else fallback[k] for k, d in enumerate(dims)]


def _load_timing_cache(config: Any, path: Path) -> Any:
    data = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(data)
    except Exception:  # noqa: BLE001 - unreadable (other TensorRT version, truncated): start fresh
        cache = None
    if cache is None and data:
        cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise EngineError(f"TensorRT refused the timing cache {path}", "delete the file and build again")
    return cache


def build_engine(
    bundle: str | Path,
    precision: str = "fp16",
    *,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_gb: float = 4.0,
    opt_level: int = 3,
    timing_cache: Path | None = None,
    version_compatible: bool = False,
    force: bool = False,
    strongly_typed: bool | None = None,
    device: int = 0,
) -> Path:
    """Build a TensorRT engine for `precision` from the bundle's ONNX and record it in the manifest.

    `timing_cache` defaults to `timing.<gpu-slug>.cache` in the bundle; it is
    read before and written after the build, so rebuilds (other precisions,
    other profiles) skip the kernel timing they already did. Returns the
    engine's path. Raises `MissingDependencyError` without tensorrt/cuda-python,
    `BundleError` for a missing ONNX or an existing engine (without `force`),
    `EngineError` for parser or builder failures.
    """
    check_precision(precision)
    _check_profile(min_batch, opt_batch, max_batch)
    if not 0 <= opt_level <= 5:
        raise EngineError(f"builder optimization level must be 0..5, got {opt_level}")
    if workspace_gb <= 0:
        raise EngineError(f"workspace must be positive, got {workspace_gb} GB")
    b = load_bundle(bundle, verify=True)
    onnx_path = _pick_onnx(b, precision)
    trt = import_tensorrt()
    gpu = device_info(device)
    target = b.path(engine_filename(precision, gpu))
    if target.exists() and not force:
        raise BundleError(f"engine already exists: {target}", "pass --force to rebuild it")
    major, minor = parse_version(trt.__version__)
    typed, flags = _typing_plan(major, precision, strongly_typed)

    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(
            f"TensorRT's ONNX parser rejected {onnx_path.name}: {'; '.join(errors) or logger.tail()}",
            "check the export; `dsedge doctor` shows the TensorRT version",
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    config.builder_optimization_level = int(opt_level)
    for name in flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)

    input_name = str(b.manifest.get("input", {}).get("name", "input"))
    dims = _sample_dims(network, b, input_name)
    profile = builder.create_optimization_profile()
    shapes = {k: [n, *dims] for k, n in (("min", min_batch), ("opt", opt_batch), ("max", max_batch))}
    profile.set_shape(input_name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache else b.path(f"timing.{gpu.slug}.cache")
    _load_timing_cache(config, cache_path)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f"TensorRT could not build a {precision} engine from {onnx_path.name}: {logger.tail() or 'no log'}",
            "try a larger --workspace-gb or another precision",
        )
    seconds = time.perf_counter() - t0
    atomic_write_bytes(target, bytes(serialized))
    atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))

    b.add_artifact(
        target.name,
        "tensorrt",
        precision,
        tensorrt_version=str(trt.__version__),
        tensorrt_major_minor=f"{major}.{minor}",
        gpu=gpu.name,
        compute_capability=gpu.compute_capability,
        profile={"input": input_name, **shapes},
        strongly_typed=typed,
        builder_flags=flags,
        version_compatible=bool(version_compatible),
        opt_level=int(opt_level),
        workspace_gb=float(workspace_gb),
        onnx=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        build_seconds=round(seconds, 2),
    )
    b.save()
    return target
