"""Build TensorRT engines from a bundle's ONNX artifacts, for TensorRT 10.x and 11.x (DESIGN §5).

The precision of an engine comes from the ONNX we feed the parser:
`model.onnx` (fp32), `model.fp16.onnx` (FP16 weights/activations, FP32 I/O,
SimAM reductions in FP32) and for int8 `model.int8-fp16.onnx` (explicit Q/DQ
with FP16 float layers, from `dsedge calibrate`; else `model.int8.onnx`, whose
unquantized layers would run FP32, with a warning). How the
builder is told about it depends on the TensorRT version, decided at run time
from `tensorrt.__version__`:

* Strong typing is the default everywhere: the network is strongly typed and
  no precision flag is set, so each layer runs in the type the ONNX gives it
  (fp16 from `model.fp16.onnx`, int8 from the Q/DQ model). TensorRT 11 knows
  nothing else (weak typing and `BuilderFlag.FP16/INT8` were removed; its
  deprecated STRONGLY_TYPED creation flag is ignored, so we pass none), and
  TensorRT 10.12+ deprecated `BuilderFlag.FP16` in favour of it.
* TensorRT 10 keeps the weakly typed flag path (`strongly_typed=False`, or an
  fp16 build of a bundle without `model.fp16.onnx`): `BuilderFlag.FP16`
  (+ INT8 for int8) on a weakly typed network, for older 10.x deployments.
  The manifest says which path built the engine (`typing`, `builder_flags`).
* fp32 clears `BuilderFlag.TF32` (on by default: Ampere+ and Orin would run
  FP32 convolutions with 10-bit mantissas) unless `tf32=True`; the manifest
  records the state of TF32 for every engine.

Every build makes `device` the current CUDA device before the builder exists,
uses an optimization profile min/opt/max on the batch dimension of the input,
a persistent timing cache per GPU and TensorRT version (a cache TensorRT
refuses — another GPU or version — is replaced by one of this GPU and
version beside it, `<cache>.<gpu-slug>.trt<version>.cache`, which later builds
read back instead of tuning from scratch again), a workspace limit, the builder optimization level, detailed
profiling verbosity (so the engine inspector can report per-layer
precisions, recorded in the manifest) and can make a version-compatible
engine. The serialized engine lands atomically in the bundle as
`model.<precision>.<gpu-slug>.trt<version>.plan` (one engine per precision,
GPU model and TensorRT release, so a build with another TensorRT on the same
GPU adds an engine instead of replacing one) with a manifest entry recording the
TensorRT version, GPU name, compute capability, precision, typing, TF32,
profile and sha256 — what `TrtRunner` checks before it runs an engine.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from dsedge.bundle import MIXED_INT8, Bundle, engine_file, load_bundle, timing_cache_file
from dsedge.engines.cuda_utils import DeviceInfo, device_info, gpu_slug, import_cudart, set_device
from dsedge.engines.trt_inspect import inspect_plan
from dsedge.engines.trt_versions import major_minor, version_tuple
from dsedge.errors import BundleError, EngineError, MissingDependencyError
from dsedge.utils.io import atomic_write_bytes, sha256_file

PRECISIONS = ("fp32", "fp16", "int8")
#: TensorRT 10.12 deprecated BuilderFlag.FP16 and .INT8 (strong typing supersedes them); 11.0 removed them.
FP16_FLAG_DEPRECATED = (10, 12)


class TensorRTWarning(UserWarning):
    """Something about a TensorRT build or run the user should know, that does not stop it."""


def warn(message: str) -> None:
    warnings.warn(message, TensorRTWarning, stacklevel=3)


def import_tensorrt() -> ModuleType:
    """`import tensorrt`, or a `MissingDependencyError` naming the package and the `tensorrt` extra."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as e:
        raise MissingDependencyError("tensorrt", "tensorrt", "building and running TensorRT engines") from e
    except OSError as e:  # installed, but its shared libraries (libnvinfer, CUDA) do not load
        raise EngineError(f"tensorrt is installed but cannot load: {e}", "check the CUDA/driver install; see `dsedge doctor`") from e
    return trt


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}", f"use one of: {', '.join(PRECISIONS)}")
    return precision


def engine_filename(precision: str, gpu: DeviceInfo | str, version: str) -> str:
    """`model.<precision>.<gpu-slug>.trt<version>.plan`: one engine per precision, GPU model and TensorRT.

    A plan runs only on the TensorRT release that built it (`trt_versions`), so
    the release is part of the name: engines for JetPack's 10.3 and a server's
    10.13 on the same GPU model live side by side, and `TrtRunner.from_bundle`
    and the Triton export pick by GPU and version.
    """
    slug = gpu.slug if isinstance(gpu, DeviceInfo) else gpu_slug(gpu)
    version_tuple(version)  # refuse an unparsable version before it becomes a file name
    return engine_file(precision, slug, version)


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



@dataclass
class TypingPlan:
    """How one build gets its precision: which ONNX, strong or weak typing, which builder flags."""

    onnx: Path
    strongly_typed: bool
    flags: list[str] = field(default_factory=list)

    @property
    def typing(self) -> str:
        if self.strongly_typed:
            return f"strongly typed: precision from {self.onnx.name}"
        return "weakly typed: " + (f"BuilderFlag {'+'.join(self.flags)}" if self.flags else "FP32 (no flags)")


def _onnx_if_present(bundle: Bundle, precision: str) -> Path | None:
    return bundle.onnx_if_present(precision)


def _warn_deprecated_flags(version: str, flags: str) -> None:
    """TensorRT 10.12 deprecated the precision builder flags (FP16 and INT8 alike, NvInfer.h): say so."""
    if version_tuple(version)[:2] >= FP16_FLAG_DEPRECATED:
        warn(f"TensorRT {version} deprecates BuilderFlag.{flags.replace(' and ', ' and BuilderFlag.')} "
             "(weak typing); a strongly typed build from the ONNX's own precision is the supported path")


def typing_plan(bundle: Bundle, precision: str, version: str, strongly_typed: bool | None) -> TypingPlan:
    """Choose the ONNX and typing for `precision` on TensorRT `version` (see the module docstring)."""
    major = version_tuple(version)[0]
    if major >= 11 and strongly_typed is False:
        raise EngineError(
            "TensorRT 11 removed weakly typed networks; strongly_typed=False is not possible",
            "drop --weakly-typed; precision comes from the ONNX file",
        )
    if precision == "fp32":
        fp32_onnx = _onnx_if_present(bundle, "fp32") or bundle.require("onnx", "fp32")
        return TypingPlan(fp32_onnx, bool(strongly_typed) or major >= 11)
    if precision == "int8":
        qdq = _onnx_if_present(bundle, "int8")
        mixed = _onnx_if_present(bundle, MIXED_INT8)
        if strongly_typed is False:  # weak typing: INT8+FP16 flags let TensorRT pick FP16 for float layers
            _warn_deprecated_flags(version, "INT8 and FP16")
            return TypingPlan(qdq or bundle.require("onnx", "int8"), False, ["INT8", "FP16"])
        # strong typing: layers run in the ONNX's types, so the mixed twin keeps float layers FP16
        return TypingPlan(mixed or qdq or bundle.require("onnx", "int8"), True)
    fp16_onnx = _onnx_if_present(bundle, "fp16")
    if fp16_onnx is not None and strongly_typed is not False:
        return TypingPlan(fp16_onnx, True)
    if major >= 11 or strongly_typed:
        bundle.require("onnx", "fp16")  # raises: strong typing needs the FP16 ONNX
    _warn_deprecated_flags(version, "FP16")
    source = fp16_onnx or _onnx_if_present(bundle, "fp32") or bundle.require("onnx", "fp32")
    return TypingPlan(source, False, ["FP16"])


def network_flags(trt: ModuleType, version: str, strongly_typed: bool) -> int:
    """`create_network` flags. TensorRT 10: 1 << STRONGLY_TYPED (read from the module, = 1 there).

    TensorRT 11: 0. Every network is strongly typed and its STRONGLY_TYPED (= 0) is deprecated
    and ignored; bit 1 there means PREFER_JIT_PYTHON_PLUGINS, so values are never hard-coded.
    """
    if not strongly_typed or version_tuple(version)[0] >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _check_profile(min_batch: int, opt_batch: int, max_batch: int) -> None:
    if not (1 <= min_batch <= opt_batch <= max_batch):
        raise EngineError(
            f"invalid batch profile min={min_batch} opt={opt_batch} max={max_batch}",
            "need 1 <= --min-batch <= --opt-batch <= --max-batch",
        )


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


def timing_cache_name(gpu: DeviceInfo, version: str) -> str:
    """`timing.<gpu-slug>.trt<version>.cache`: timings are only valid for one GPU model and TensorRT."""
    return timing_cache_file(gpu.slug, version)


def own_cache_path(path: Path, gpu: DeviceInfo, version: str) -> Path:
    """Where this GPU and TensorRT keep their cache when TensorRT refuses `path`.

    `<stem>.<gpu-slug>.trt<version><suffix>` beside it: never over the refused
    file (it may be another GPU's shared cache), never over another GPU's
    fallback, and found again by the next build on this GPU and version. A
    path that already names this GPU and version (the bundle's default) is its
    own fallback.
    """
    tag = f"{gpu.slug}.trt{version}"
    return path if tag in path.name else path.with_name(f"{path.stem}.{tag}{path.suffix}")


def _load_cache(config: Any, path: Path) -> tuple[bool | None, bytes]:
    """(accepted: True, refused: False, unreadable: None; the bytes read) for the cache file at `path`."""
    data = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(data)
    except Exception:  # noqa: BLE001 - TensorRT raises for an unreadable blob
        return None, data
    if cache is None:
        return None, data
    return bool(config.set_timing_cache(cache, ignore_mismatch=False)), data


def _attach_timing_cache(config: Any, path: Path, own: Path) -> tuple[Path, str]:
    """Load `path` into the config; (where to save the cache after the build, what happened).

    A cache TensorRT cannot read (truncated, other format) or refuses
    (`set_timing_cache` returns False: made on another GPU or TensorRT version)
    is not an error: `own` (see `own_cache_path`) is tried next, and only when
    that is missing or refused too do we warn and start a fresh cache, saved to
    `own` so the next build reads it back.
    """
    accepted, data = _load_cache(config, path)
    if accepted:
        return path, "loaded" if data else "new"
    if own != path and own.is_file():
        own_accepted, _ = _load_cache(config, own)
        if own_accepted:
            return own, f"loaded {own.name} ({path.name} is another GPU's or TensorRT's)"
    save_to = own if data else path
    why = "cannot read it" if accepted is None else "refused it (made on another GPU or TensorRT version)"
    warn(f"TensorRT {why}: {path}; starting a fresh timing cache, saved to {save_to.name}")
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, ignore_mismatch=False):
        raise EngineError(f"TensorRT refused even an empty timing cache for {path}", "report this with `dsedge doctor`")
    return save_to, "fresh (unreadable)" if accepted is None else "fresh (refused)"


def _set_tf32(trt: ModuleType, config: Any, precision: str, tf32: bool) -> bool | None:
    """Clear TF32 for a strict fp32 engine (or keep it with `tf32=True`); the TF32 state, None if unknown."""
    flag = getattr(trt.BuilderFlag, "TF32", None)
    if flag is None:
        if precision == "fp32" and not tf32:
            warn("this TensorRT has no BuilderFlag.TF32: FP32 layers may use TF32 on Ampere and newer")
        return None
    if precision == "fp32":
        (config.set_flag if tf32 else config.clear_flag)(flag)
    return bool(config.get_flag(flag))


def _check_int8_layers(layers: dict[str, Any] | None, bundle: Bundle, plan: TypingPlan) -> None:
    """Warn when an INT8 engine runs its unquantized layers in FP32 (a Q/DQ model from the FP32 graph)."""
    if layers and layers.get("unreadable"):
        warn("could not read any layer's precision from the engine inspector (unknown report format): "
             "the INT8 engine's float layers were not checked")
        return
    entry = bundle.artifacts.get(plan.onnx.name, {})
    counts = (layers or {}).get("counts", {})
    float_fp16 = entry.get("precision") == MIXED_INT8 or entry.get("float_precision") == "fp16"
    if plan.strongly_typed and (not float_fp16 or (counts.get("FP32", 0) and not counts.get("FP16", 0))):
        warn(
            f"{plan.onnx.name} keeps its unquantized layers in FP32 "
            f"({counts.get('FP32', '?')} FP32 layers, {counts.get('FP16', 0)} FP16): they run in FP32 on "
            "TensorRT; recalibrate so the float layers are FP16 (`dsedge calibrate`)"
        )


@dataclass(frozen=True)
class _BuildOptions:
    """The caller's build settings, checked together before the bundle or TensorRT is touched."""

    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_gb: float
    opt_level: int
    version_compatible: bool
    tf32: bool
    device: int

    def check(self) -> None:
        check_precision(self.precision)
        _check_profile(self.min_batch, self.opt_batch, self.max_batch)
        if not 0 <= self.opt_level <= 5:
            raise EngineError(f"builder optimization level must be 0..5, got {self.opt_level}")
        if self.workspace_gb <= 0:
            raise EngineError(f"workspace must be positive, got {self.workspace_gb} GB")

    def profile_shapes(self, dims: list[int]) -> dict[str, list[int]]:
        """min/opt/max input shapes: the batch sizes in front of the sample's C, H, W."""
        return {k: [n, *dims] for k, n in (("min", self.min_batch), ("opt", self.opt_batch), ("max", self.max_batch))}


@dataclass
class _Session:
    """The TensorRT objects of one build, held together.

    The parser owns the weights the parsed network points to, so it must stay
    alive until the engine is serialized; keeping it here guarantees that.
    """

    trt: ModuleType
    logger: Any
    builder: Any
    network: Any
    parser: Any


def _parse_onnx(trt: ModuleType, version: str, plan: TypingPlan) -> _Session:
    """Parse the plan's ONNX into a network typed as the plan says; parser errors become `EngineError`."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, version, plan.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(
            f"TensorRT's ONNX parser rejected {plan.onnx.name}: {'; '.join(errors) or logger.tail()}",
            "check the export; `dsedge doctor` shows the TensorRT version",
        )
    return _Session(trt, logger, builder, network, parser)


def _make_config(session: _Session, plan: TypingPlan, opts: _BuildOptions) -> tuple[Any, bool | None]:
    """The builder config (workspace, optimization level, profiling, flags); (config, TF32 state)."""
    trt = session.trt
    config = session.builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_gb * (1 << 30)))
    config.builder_optimization_level = int(opts.opt_level)
    if hasattr(trt, "ProfilingVerbosity"):  # per-layer precisions for the engine inspector
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    tf32_state = _set_tf32(trt, config, opts.precision, opts.tf32)
    if opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    return config, tf32_state


def _add_batch_profile(
    session: _Session, config: Any, bundle: Bundle, opts: _BuildOptions
) -> tuple[str, dict[str, list[int]]]:
    """Add the min/opt/max batch profile on the bundle's input; (input name, shapes) for the manifest."""
    input_name = bundle.input_name
    dims = _sample_dims(session.network, bundle, input_name)
    profile = session.builder.create_optimization_profile()
    shapes = opts.profile_shapes(dims)
    profile.set_shape(input_name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    config.add_optimization_profile(profile)
    return input_name, shapes


def _serialize(session: _Session, config: Any, plan: TypingPlan, precision: str) -> tuple[bytes, float]:
    """Run the build; (serialized engine, seconds). A failed build says why, from TensorRT's log."""
    t0 = time.perf_counter()
    serialized = session.builder.build_serialized_network(session.network, config)
    if serialized is None:
        raise EngineError(
            f"TensorRT could not build a {precision} engine from {plan.onnx.name}: "
            f"{session.logger.tail() or 'no log'}",
            "try a larger --workspace-gb or another precision",
        )
    seconds = time.perf_counter() - t0
    return bytes(serialized), seconds


def _layer_precisions(session: _Session, data: bytes, version_compatible: bool) -> dict[str, Any] | None:
    """Per-layer precisions from the engine inspector, or None with a warning.

    A report about the engine must never cost the engine itself, so any inspector
    failure (its API differs between releases) is only a warning.
    """
    try:
        return inspect_plan(session.trt, session.logger, data, host_code_allowed=version_compatible)
    except Exception as e:  # noqa: BLE001 - inspector API differences between releases
        warn(f"could not read layer precisions from the engine inspector: {e}")
        return None


def _engine_entry(
    *,
    version: str,
    gpu: DeviceInfo,
    plan: TypingPlan,
    opts: _BuildOptions,
    profile: dict[str, Any],
    tf32_state: bool | None,
    layers: dict[str, Any] | None,
    timing_cache: dict[str, str],
    seconds: float,
) -> dict[str, Any]:
    """The manifest fields of an engine: everything `TrtRunner` checks before it runs it, and how it was built."""
    major, minor = major_minor(version)
    return dict(
        tensorrt_version=version,
        tensorrt_major_minor=f"{major}.{minor}",
        gpu=gpu.name,
        compute_capability=gpu.compute_capability,
        device=int(opts.device),
        profile=profile,
        strongly_typed=plan.strongly_typed,
        typing=plan.typing,
        builder_flags=plan.flags,
        tf32=tf32_state,
        layer_precisions=layers,
        version_compatible=bool(opts.version_compatible),
        opt_level=int(opts.opt_level),
        workspace_gb=float(opts.workspace_gb),
        onnx=plan.onnx.name,
        onnx_sha256=sha256_file(plan.onnx),
        timing_cache=timing_cache,
        build_seconds=round(seconds, 2),
    )


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
    tf32: bool = False,
    device: int = 0,
) -> Path:
    """Build a TensorRT engine for `precision` from the bundle's ONNX and record it in the manifest.

    `timing_cache` defaults to `timing.<gpu-slug>.trt<version>.cache` in the
    bundle; it is read before and written after the build, so rebuilds (other
    precisions, other profiles) skip the kernel timing they already did.
    `device` becomes the current CUDA device before anything is created.
    Returns the engine's path. Raises `MissingDependencyError` without
    tensorrt/cuda-python, `BundleError` for a missing ONNX or an existing engine
    (without `force`), `EngineError` for parser or builder failures.
    """
    opts = _BuildOptions(
        precision, min_batch, opt_batch, max_batch, workspace_gb, opt_level, version_compatible, tf32, device
    )
    opts.check()
    b = load_bundle(bundle, verify=True)
    trt = import_tensorrt()
    version = str(trt.__version__)
    plan = typing_plan(b, precision, version, strongly_typed)
    rt = import_cudart()
    set_device(device, rt)  # TensorRT builds for the current device: set it before the Builder exists
    gpu = device_info(device, rt)
    target = b.path(engine_filename(precision, gpu, version))
    if target.exists() and not force:
        raise BundleError(f"engine already exists: {target}", "pass --force to rebuild it")

    session = _parse_onnx(trt, version, plan)
    config, tf32_state = _make_config(session, plan, opts)
    input_name, shapes = _add_batch_profile(session, config, b, opts)
    cache_path = Path(timing_cache) if timing_cache else b.path(timing_cache_name(gpu, version))
    cache_out, cache_status = _attach_timing_cache(config, cache_path, own_cache_path(cache_path, gpu, version))
    data, seconds = _serialize(session, config, plan, precision)
    layers = _layer_precisions(session, data, version_compatible)
    if precision == "int8":
        _check_int8_layers(layers, b, plan)
    atomic_write_bytes(target, data)
    atomic_write_bytes(cache_out, bytes(config.get_timing_cache().serialize()))

    entry = _engine_entry(
        version=version, gpu=gpu, plan=plan, opts=opts, profile={"input": input_name, **shapes},
        tf32_state=tf32_state, layers=layers, timing_cache={"file": cache_out.name, "status": cache_status},
        seconds=seconds,
    )
    b.add_artifact(target.name, "tensorrt", precision, **entry)
    b.save()
    return target
