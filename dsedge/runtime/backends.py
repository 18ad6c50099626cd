"""Which engine runs a bundle on this machine, chosen through the engine registry, and every output of a call.

The backends of the torch-free runtime are the registry's `runtime=True`
entries (`dsedge.engines.registry`): TensorRT (engines built on this GPU),
ONNX Runtime and OpenVINO today, and any backend registered later. `auto`
tries, in `auto_rank` order, the runtime backends that run the asked
precision: TensorRT first, then ONNX Runtime (why TensorRT was passed over is
kept in `fallback_reason`). OpenVINO has no rank: it is the fastest CPU path
(DESIGN §6) but an optional package, so it is chosen by name. With no
precision asked, each backend tries its `preference` over the precisions the
bundle holds for it (TensorRT fp16 first; ONNX Runtime fp32 first, since a CPU
computes FP16 in FP32 anyway).

`all_outputs` returns every graph output of one engine call by name
(`Runner.infer_all`), so a bundle exported with `--cam` gives logits and
class-activation maps from the same run on every backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dsedge.bundle import Bundle
from dsedge.bundle.artifacts import SOURCE_PRECISION
from dsedge.engines import registry
from dsedge.engines.base import Runner, check_batch
from dsedge.engines.registry import Backend
from dsedge.errors import BundleError, DsedgeError, EngineError

#: Every precision name a dsedge artifact or backend knows (validated before the registry is asked).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def backend_choices() -> tuple[str, ...]:
    """`auto` and the registry's runtime backends: what `dsedge predict --backend` accepts."""
    return ("auto", *(b.name for b in registry.runtime_backends()))


def check_choice(value: str | None, allowed: tuple[str, ...], what: str) -> None:
    if value is not None and value not in allowed:
        raise DsedgeError(f"unknown {what} {value!r}", f"use one of: {', '.join(allowed)}")


def _has_artifact(bundle: Bundle, spec: Backend, precision: str) -> bool:
    if spec.artifact == "tensorrt":
        return bool(bundle.find("tensorrt", precision))
    if spec.artifact == "onnx":
        return bool(bundle.find("onnx", SOURCE_PRECISION.get(precision, precision)))
    return True  # a checkpoint backend finds its weights itself


def _missing_artifact(bundle: Bundle, spec: Backend, precision: str | None) -> DsedgeError:
    if spec.artifact == "tensorrt":
        return BundleError(f"bundle {bundle.root} has no TensorRT engine" + (f" for {precision}" if precision else ""),
                           "run `dsedge build BUNDLE --precision ...` on this device")
    try:
        bundle.require(spec.artifact, SOURCE_PRECISION.get(precision or "fp32", precision or "fp32"))
    except BundleError as e:
        return e
    return BundleError(f"bundle {bundle.root} has nothing {spec.name} runs")


def _options(spec: Backend, device: int, providers: Any, threads: int | None, cuda_graph: bool,
             output: str | None) -> dict[str, Any]:
    dev = {"cuda": f"cuda:{device}", "cpu": "cpu"}.get(spec.device, "auto")
    return {"device": dev, "providers": providers, "threads": threads, "cuda_graph": cuda_graph,
            "output": output, "split": True}


def _build(spec: Backend, bundle: Bundle, precision: str | None, options: dict[str, Any]) -> Runner:
    """A runner of `spec` for `precision`, or for the first precision of its preference the bundle holds."""
    if precision is not None:
        if not _has_artifact(bundle, spec, precision):
            raise _missing_artifact(bundle, spec, precision)
        return spec.from_bundle(bundle, precision, **options)
    order = [p for p in spec.preference if _has_artifact(bundle, spec, p)]
    if not order:
        raise _missing_artifact(bundle, spec, None)
    errors: list[EngineError] = []
    for p in order:
        try:
            return spec.from_bundle(bundle, p, **options)
        except EngineError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    raise EngineError("; ".join(e.message for e in errors), errors[0].hint)


def _candidates(backend: str, precision: str | None) -> list[Backend]:
    if backend != "auto":
        spec = registry.get(backend)
        if precision is not None and precision not in spec.runs:
            runs = [b.name for b in registry.runtime_backends() if precision in b.runs]
            names = ", ".join(runs) or "no runtime backend"
            raise DsedgeError(f"{precision} runs on the {names} backend only" if runs else f"{precision}: {names}",
                              f"pass --backend {runs[0]}" if runs else None)
        return [spec]
    order = registry.auto_order(precision)
    if not order:
        runs = [b.name for b in registry.runtime_backends() if precision in b.runs]
        raise DsedgeError(f"{precision} runs on the {', '.join(runs) or 'no runtime'} backend only",
                          f"pass --backend {runs[0]}" if runs else None)
    return order


def select_runner(bundle: Bundle, backend: str, precision: str | None, *, device: int = 0,
                  providers: Any = "auto", threads: int | None = None, cuda_graph: bool = False,
                  output: str | None = None) -> tuple[Runner, str | None]:
    """(runner, fallback_reason): the engine for `backend`/`precision` on this machine, through the registry."""
    check_choice(backend, backend_choices(), "backend")
    check_choice(precision, PRECISIONS, "precision")
    candidates = _candidates(backend, precision)
    reasons: list[str] = []
    for i, spec in enumerate(candidates):
        try:
            runner = _build(spec, bundle, precision, _options(spec, device, providers, threads, cuda_graph, output))
        except DsedgeError as e:
            if i == len(candidates) - 1:
                raise
            reasons.append(e.message)
            continue
        return runner, "; ".join(reasons) or None
    raise AssertionError("unreachable: _candidates never returns an empty list")


def all_outputs(runner: Runner, batch: np.ndarray, logits_name: str | None) -> dict[str, np.ndarray]:
    """Every output of one engine call, by name (`Runner.infer_all`); the logits are also under "logits"."""
    outs = dict(runner.infer_all(check_batch(batch)))
    key = logits_name if logits_name in outs else next(iter(outs))
    outs["logits"] = outs[key]
    return outs
