"""Write a Triton Inference Server model repository from a bundle (beyond one device).

Layout (Triton's documented repository structure)::

    REPO/<name>/config.pbtxt     platform "tensorrt_plan" or "onnxruntime_onnx"
    REPO/<name>/labels.txt       class names, one per line, in output order
    REPO/<name>/1/model.plan     (or model.onnx)

A Triton model has one platform, so with several backends the first one
available in `backends` order is `<name>` (what clients call) and each other
one gets its own model `<name>_<backend>` (e.g. `dsedge_onnx`) for A/B tests
or a CPU fallback. `<name>` must be a plain model name: it becomes a folder
that `--force` replaces, so a path (`../x`, `a/b`, `/abs`, `.`) is refused.
Input/output names, data types and dims come from the ONNX file itself (the
engine's source ONNX for TensorRT), dims without the batch dimension, as
Triton wants when `max_batch_size > 0`. `label_filename` makes Triton's
classification extension return class names.

A TensorRT plan only runs on the GPU model and TensorRT release that built it,
so the engine is chosen for the serving machine (`gpu`, `tensorrt_version`;
a warning when they are not given and the bundle cannot say). A
version-compatible plan needs the backend's `version-compatible=true`
setting, which Triton takes on its command line (`--backend-config`), not in
config.pbtxt: the config carries it as a comment and `server_args` returns it.
Triton may send any batch from 1 to `max_batch_size`, so the engine profile
must start at batch 1 and reach `max_batch_size`.

Safety, as for `dsedge export --force`: `--force` replaces only a model folder
that holds nothing but what this export writes (config.pbtxt, labels.txt,
`1/model.plan|model.onnx` and the ONNX's external-data files); anything else
makes it refuse and name what would be lost. REPO must be a folder (a file is
refused before any work). An ONNX whose external data points outside the
bundle (`../../etc/passwd`, an absolute path) is refused, never served; data
inside the bundle is copied beside the served model. A full disk names the
folder being written, not the bundle file being read.
"""

from __future__ import annotations

import errno
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

from dsedge.bundle import Bundle, load_bundle, onnx_file
from dsedge.engines.cuda_utils import gpu_slug
from dsedge.engines.trt_versions import version_mismatch
from dsedge.errors import BundleError, DsedgeError
from dsedge.utils.io import atomic_dir, check_output_dir, is_disk_full

#: a plain model name: letters, digits, '_', '-', '.', not starting with '.' or '-'
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
VERSION_COMPATIBLE_ARG = "--backend-config=tensorrt,version-compatible=true"
_ARGS_MARKER = "# tritonserver needs: "


class TritonWarning(UserWarning):
    """The Triton repository was written, but the engine choice could not be checked."""


PLATFORMS = {"tensorrt": "tensorrt_plan", "onnx": "onnxruntime_onnx"}
FILES = {"tensorrt": "model.plan", "onnx": "model.onnx"}  # Triton's own names inside a model folder
# ONNX TensorProto element type -> Triton DataType name
ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32", 7: "TYPE_INT64",
                  3: "TYPE_INT8", 2: "TYPE_UINT8", 9: "TYPE_BOOL", 16: "TYPE_BF16"}


#: what `export_triton` writes into a model folder; anything else there is the user's
MODEL_FILES = {"config.pbtxt", "labels.txt"}
MAX_LISTED = 5


def _foreign_entries(folder: Path, served: set[str]) -> list[str]:
    """Entries of a model folder that this export did not write (what `--force` would delete)."""
    foreign = []
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if p.name in MODEL_FILES and p.is_file() and not p.is_symlink():
            continue
        if p.name == "1" and p.is_dir() and not p.is_symlink():
            foreign += [f"1/{q.relative_to(p)}" for q in sorted(p.rglob("*"))
                        if q.is_symlink() or (q.is_file() and str(q.relative_to(p)) not in served)]
            continue
        foreign.append(p.name + ("/" if p.is_dir() else ""))
    return foreign


def _check_replaceable(target: Path, force: bool, served: set[str]) -> None:
    """Refuse to replace `target` unless it is a model folder holding only what this export writes."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise DsedgeError(f"{target} exists and is not a model folder", "choose another --name or REPO")
    if not force:
        raise DsedgeError(f"{target} already exists", "pass --force to replace it")
    foreign = _foreign_entries(target, served)
    if foreign:
        shown = ", ".join(foreign[:MAX_LISTED]) + (f" ... and {len(foreign) - MAX_LISTED} more"
                                                   if len(foreign) > MAX_LISTED else "")
        raise DsedgeError(f"--force replaces only a model folder dsedge wrote; {target} also holds {shown}",
                          "choose another --name, or move those files away first")


def external_data_files(onnx_path: Path, root: Path) -> list[str]:
    """Relative paths of the external-data files `onnx_path` uses; refuses any outside `root`.

    ONNX Runtime (and so Triton) opens an initializer's `location` relative to
    the model file: `../../etc/passwd` would make the served model read a file
    of the server. Only plain paths inside the bundle are accepted.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    locations = set()
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations |= {e.value for e in tensor.external_data if e.key == "location"}
    base, top = onnx_path.parent.resolve(), root.resolve()
    for loc in sorted(locations):
        where = (base / loc).resolve()
        if Path(loc).is_absolute() or not where.is_relative_to(top) or not where.is_file():
            raise BundleError(
                f"{onnx_path.name} refers to external data {loc!r} outside the bundle (or missing)",
                "re-export the model; a bundle's ONNX files may only use data files inside the bundle",
            )
    return sorted(locations)


def _io_specs(onnx_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Graph inputs/outputs as {name, data_type, dims-without-batch} from the ONNX file."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}

    def spec(vi: Any) -> dict[str, Any]:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.dim_value > 0 else -1 for d in t.shape.dim][1:]
        return {"name": vi.name, "data_type": ONNX_TO_TRITON.get(t.elem_type, "TYPE_FP32"), "dims": dims}

    inputs = [spec(v) for v in graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in graph.output]


def _dims(dims: list[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def config_pbtxt(
    name: str,
    backend: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    max_batch: int,
    dynamic_batching: bool,
    preferred: list[int],
) -> str:
    """The model configuration in protobuf text format (Triton's `ModelConfig` message)."""
    lines = [f'name: "{name}"', f'platform: "{PLATFORMS[backend]}"', f"max_batch_size: {max_batch}", "input ["]
    lines += [",\n".join(
        f'  {{\n    name: "{i["name"]}"\n    data_type: {i["data_type"]}\n    dims: {_dims(i["dims"])}\n  }}'
        for i in inputs)]
    lines += ["]", "output ["]
    outs = []
    for k, o in enumerate(outputs):
        label = '\n    label_filename: "labels.txt"' if k == 0 else ""
        outs.append(f'  {{\n    name: "{o["name"]}"\n    data_type: {o["data_type"]}\n    dims: {_dims(o["dims"])}{label}\n  }}')
    lines += [",\n".join(outs), "]"]
    if backend == "tensorrt":
        lines += ["instance_group [", "  {\n    kind: KIND_GPU\n    count: 1\n  }", "]"]
    if dynamic_batching:
        lines += ["dynamic_batching {", f"  preferred_batch_size: {_dims(preferred)}",
                  "  max_queue_delay_microseconds: 100", "}"]
    return "\n".join(lines) + "\n"


def check_model_name(name: str) -> str:
    """`name` if it is a plain Triton model name, else a `DsedgeError` (it becomes a folder `--force` replaces)."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name) or name in (".", ".."):
        raise DsedgeError(
            f"invalid Triton model name {name!r}",
            "use a plain name: letters, digits, '_', '-', '.' (no path separators, not starting with '.')",
        )
    return name


def _engine_fits(entry: dict[str, Any], gpu: str | None, tensorrt_version: str | None) -> str | None:
    """Why an engine does not suit the serving machine, or None."""
    if gpu and gpu_slug(str(entry.get("gpu", ""))) != gpu_slug(gpu):
        return f"built on {entry.get('gpu', '?')}, not {gpu}"
    if tensorrt_version and entry.get("tensorrt_version"):
        return version_mismatch(str(entry["tensorrt_version"]), tensorrt_version, bool(entry.get("version_compatible")))
    return None


def _pick_engine(
    b: Bundle, precision: str | None, gpu: str | None, tensorrt_version: str | None
) -> tuple[str, dict[str, Any]]:
    """(file, entry) of the engine for the serving GPU and TensorRT; warns when it has to guess."""
    order = [precision] if precision else ["fp16", "int8", "fp32"]
    engines = [n for p in order for n in b.find("tensorrt", p)]
    if not engines:
        raise BundleError(
            f"bundle {b.root} has no TensorRT engine{' for ' + precision if precision else ''}",
            "run `dsedge build BUNDLE` on a GPU of the serving machine's model, or use --backend onnx",
        )
    reasons = []
    for name in engines:
        why = _engine_fits(b.artifacts[name], gpu, tensorrt_version)
        if why is None:
            break
        reasons.append(f"{name}: {why}")
    else:
        raise BundleError(
            "no TensorRT engine in the bundle suits the serving machine: " + "; ".join(reasons),
            "build one on that GPU and TensorRT (`dsedge build`), or use --backend onnx",
        )
    entry = b.artifacts[name]
    unsure = [what for what, given in (("--gpu", gpu), ("--tensorrt-version", tensorrt_version)) if not given]
    if unsure:
        others = [n for n in engines if n != name and n.split(".")[1] == name.split(".")[1]]
        warnings.warn(
            f"serving {name}, built on {entry.get('gpu', '?')} with TensorRT {entry.get('tensorrt_version', '?')}: "
            f"Triton's GPU and TensorRT must match it (not checked: pass {' and '.join(unsure)})"
            + (f"; other engines of this precision: {', '.join(others)}" if others else ""),
            TritonWarning,
            stacklevel=3,
        )
    return name, entry


def _check_profile(entry: dict[str, Any], max_batch: int) -> None:
    profile = entry.get("profile", {})
    engine_min = int(profile.get("min", [1])[0])
    engine_max = int(profile.get("max", [max_batch])[0])
    if engine_min > 1:
        raise DsedgeError(
            f"the engine's profile starts at batch {engine_min}, but Triton sends batches from 1 to max_batch_size",
            "rebuild the engine with --min-batch 1",
        )
    if max_batch > engine_max:
        raise DsedgeError(
            f"max_batch {max_batch} exceeds the engine's profile maximum {engine_max}",
            f"use --max-batch {engine_max} or rebuild the engine with a larger --max-batch",
        )


def _artifact(
    b: Bundle, backend: str, precision: str | None, gpu: str | None = None, tensorrt_version: str | None = None
) -> tuple[Path, Path, dict[str, Any]]:
    """(file to serve, ONNX that describes its I/O, manifest entry) for one backend."""
    if backend == "tensorrt":
        name, entry = _pick_engine(b, precision, gpu, tensorrt_version)
        return b.path(name), b.path(entry.get("onnx", onnx_file("fp32"))), entry
    path = b.onnx(precision or "fp32")
    return path, path, b.artifacts[path.name]


def server_args(repo: str | Path) -> list[str]:
    """Extra `tritonserver` arguments the repository's models need (e.g. version-compatible plans)."""
    args: list[str] = []
    for config in sorted(Path(repo).glob("*/config.pbtxt")):
        for line in config.read_text(encoding="utf-8").splitlines():
            if line.startswith(_ARGS_MARKER):
                args += [a for a in line[len(_ARGS_MARKER):].split() if a not in args]
    return args


def export_triton(
    bundle: str | Path,
    repo: str | Path,
    *,
    model_name: str = "dsedge",
    max_batch: int = 32,
    backends: tuple[str, ...] = ("tensorrt", "onnx"),
    dynamic_batching: bool = True,
    precision: str | None = None,
    force: bool = False,
    gpu: str | None = None,
    tensorrt_version: str | None = None,
) -> Path:
    """Write the Triton model folder(s) for `bundle` into `repo`; return the repository path.

    A backend whose artifact is missing is skipped when another one is
    available (so the default works on bundles without an engine); when none
    is, the first backend's error is raised. `gpu` and `tensorrt_version`
    describe the serving machine and choose the engine.
    """
    check_model_name(model_name)
    unknown = [x for x in backends if x not in PLATFORMS]
    if unknown or not backends:
        raise DsedgeError(f"unknown Triton backend(s) {unknown or backends}", "use tensorrt and/or onnx")
    if max_batch < 1:
        raise DsedgeError(f"max_batch must be >= 1, got {max_batch}")
    repo = Path(repo)
    check_output_dir(repo, "Triton repository")  # a file, or a path under a file: refused before any work
    b = load_bundle(bundle, verify=True)
    chosen, errors = [], []
    for backend in backends:
        try:
            chosen.append((backend, *_artifact(b, backend, precision, gpu, tensorrt_version)))
        except BundleError as e:
            errors.append(e)
    if not chosen:
        raise errors[0]
    extra: dict[str, list[str]] = {}
    for backend, artifact, _onnx, entry in chosen:
        if backend == "tensorrt":
            _check_profile(entry, max_batch)
        else:
            extra[backend] = external_data_files(artifact, b.root)
    for k, (backend, _a, _o, _e) in enumerate(chosen):  # every folder checked before any is written
        name = model_name if k == 0 else f"{model_name}_{backend}"
        _check_replaceable(repo / name, force, {FILES[backend], *extra.get(backend, [])})
    repo.mkdir(parents=True, exist_ok=True)
    for k, (backend, artifact, onnx_path, entry) in enumerate(chosen):
        name = model_name if k == 0 else f"{model_name}_{backend}"
        inputs, outputs = _io_specs(onnx_path)
        preferred = sorted({min(max_batch, p) for p in (int(entry.get("profile", {}).get("opt", [8])[0]), max_batch)})
        text = config_pbtxt(name, backend, inputs, outputs, max_batch, dynamic_batching, preferred)
        if backend == "tensorrt" and entry.get("version_compatible"):
            text = (f"# version-compatible plan from TensorRT {entry.get('tensorrt_version', '?')}\n"
                    f"{_ARGS_MARKER}{VERSION_COMPATIBLE_ARG}\n" + text)
        target = repo / name
        if target.resolve().parent != repo.resolve():  # belt and braces: never write outside the repository
            raise DsedgeError(f"refusing to write {target} outside {repo}")
        try:
            with atomic_dir(target, force=force) as tmp:
                (tmp / "1").mkdir()
                shutil.copy2(artifact, tmp / "1" / FILES[backend])
                for loc in extra.get(backend, []):
                    (tmp / "1" / loc).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(artifact.parent / loc, tmp / "1" / loc)
                (tmp / "config.pbtxt").write_text(text, encoding="utf-8")
                (tmp / "labels.txt").write_text("\n".join(b.classes) + "\n", encoding="utf-8")
        except FileExistsError as e:
            raise DsedgeError(f"{repo / name} already exists", "pass --force to replace it") from e
        except OSError as e:
            _raise_write_error(e, target)
    return repo


def _raise_write_error(e: OSError, target: Path) -> None:
    """A full disk or an unwritable repository, named by the folder being written (not the bundle file read)."""
    if is_disk_full(e):
        raise DsedgeError(f"no space left on the device while writing the Triton model {target}",
                          "free disk space (or choose another REPO), then re-run; nothing was half-written") from e
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise DsedgeError(f"permission denied while writing the Triton model {target}",
                          "choose a REPO folder you can write to") from e
    raise e
