"""A bundle's claims and their check on labelled data it has never seen (`dsedge eval BUNDLE`).

Every number a bundle states about itself — melanoma sensitivity and specificity at its operating
point, FP32 AUCs, INT8 / FP16 agreement with FP32 — is a *claim* in the manifest's `claims` section:

    {"value": 0.80, "ci": [0.61, 0.92], "rule": "within" | "at_least", "limit": ...,
     "measured_on": {"split", "role", "images", "fingerprint", "method"},
     "fitted_on": {... the data that chose the threshold / the keep-float groups ...}, ...}

`check_provenance` refuses a claim measured on the very images that fitted it unless its method
says so (cross-fitting); `check_bundle_claims` measures each claim again on any labelled split —
a device maker's own test set — and says, claim by claim, whether it holds: a two-sided claim
holds when the new measurement lies inside the stated interval, a one-sided one ("at least")
when it is not below the stated lower limit. Torch-free (the runtime's engines run the artifacts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dsedge import MELANOMA_CLASS
from dsedge.bundle import read_manifest
from dsedge.errors import DsedgeError
from dsedge.stats import proportion

CROSS_FITTED = "cross-fitted"


def make_claim(value: float | None, ci: list[float] | None, rule: str, measured_on: dict[str, Any],
               fitted_on: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """One claim as the manifest's `claims` section stores it."""
    if rule not in ("within", "at_least"):
        raise ValueError(f"unknown claim rule {rule!r}")
    return {"value": value, "ci": ci, "rule": rule, "measured_on": measured_on, "fitted_on": fitted_on, **extra}


def in_sample(claim: dict[str, Any]) -> bool:
    """True when a claim was measured on the images that fitted it (same fingerprint)."""
    fitted, measured = claim.get("fitted_on") or {}, claim.get("measured_on") or {}
    return bool(fitted.get("fingerprint")) and fitted.get("fingerprint") == measured.get("fingerprint")


def check_provenance(claims: dict[str, dict[str, Any]]) -> None:
    """Raise when a claim is measured on its own fitting data without saying so (cross-fitted or in-sample)."""
    for name, claim in claims.items():
        method = str((claim.get("measured_on") or {}).get("method", ""))
        if in_sample(claim) and CROSS_FITTED not in method and not claim.get("in_sample_label"):
            raise DsedgeError(f"claim '{name}' is measured on the images that fitted it and does not say so",
                              "measure it on a reporting split, cross-fit it, or label it in-sample")


def holds(claim: dict[str, Any], measured: float | None) -> bool | None:
    """Does a new measurement agree with the claim? None when either side is missing."""
    if measured is None or claim.get("value") is None:
        return None
    if claim["rule"] == "at_least":
        limit = claim.get("limit", (claim.get("ci") or [claim["value"]])[0])
        return bool(measured >= limit - 1e-12)
    ci = claim.get("ci")
    if not ci:
        return None
    return bool(ci[0] - 1e-12 <= measured <= ci[1] + 1e-12)


def _split_logits(bundle: Any, paths: list[Path], backend: str, precision: str,
                  progress: Any = None) -> np.ndarray:
    from dsedge.clinical.fit import split_logits
    from dsedge.runtime.predict import Predictor

    with Predictor(bundle, backend=backend, precision=precision, quality_checks=False) as predictor:
        return split_logits(predictor, paths, progress)


def _measure_point(claims: dict[str, Any], manifest: dict[str, Any], logits: np.ndarray,
                   labels: np.ndarray) -> dict[str, Any]:
    from dsedge.clinical.crossfit import counts_claim, referred

    clinical = manifest.get("clinical") or {}
    point = clinical.get("operating_point") or {}
    classes = list(read_manifest(manifest).classes)
    if point.get("threshold") is None or point.get("class", MELANOMA_CLASS) not in classes:
        return {}
    mel = classes.index(point.get("class", MELANOMA_CLASS))
    counts = counts_claim(referred(logits, mel, float(clinical.get("temperature", 1.0)), float(point["threshold"])),
                          labels == mel)
    return {f"melanoma_{k}": v for k, v in counts.items()}


def _agreement(ref: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    return proportion(int((ref.argmax(1) == other.argmax(1)).sum()), len(ref))


def check_bundle_claims(bundle_path: str | Path, data: str | Path, split: str, *,
                        backends: tuple[str, ...] = ("onnxruntime", "openvino"),
                        progress: Any = None, on_total: Any = None) -> dict[str, Any]:
    """Measure every claim of a bundle on `split` of `data`; returns rows with `holds` per claim."""
    from dsedge.clinical.calibration import softmax
    from dsedge.clinical.evaluation import bootstrap_intervals, metric_values
    from dsedge.data import load_split
    from dsedge.data.roles import split_record
    from dsedge.engines import registry
    from dsedge.errors import DataError
    from dsedge.runtime.bundle import load_bundle

    bundle = load_bundle(bundle_path, verify=True)
    ds = load_split(data, split, classes=bundle.classes)
    if len(ds) == 0:
        raise DataError(f"{data}: the '{split}' split is empty")
    claims = dict(bundle.manifest.get("claims") or {})
    on = split_record(ds, "evaluation")
    paths, labels = [s.path for s in ds.samples], np.asarray(ds.labels, dtype=np.int64)
    artifacts = [p for p in ("fp16", "int8") if bundle.find("onnx", p)]
    usable = [b for b in backends if _available(registry, b)]
    if on_total:
        on_total(len(paths) * (1 + len(artifacts) * len(usable)))
    logits = _split_logits(bundle, paths, "onnxruntime", "fp32", progress)
    probs = softmax(logits)
    values = metric_values(labels, probs, bundle.classes)
    ci = bootstrap_intervals(labels, probs, bundle.classes)
    names = {"mean_auc": "mean_auc", "mel_auc": "auc_MEL", "sk_auc": "auc_SK", "accuracy": "accuracy",
             "balanced_accuracy": "balanced_accuracy"}
    measured: dict[str, dict[str, Any]] = {k: {"value": values.get(v), "ci": ci.get(v)} for k, v in names.items()}
    measured.update(_measure_point(claims, bundle.manifest, logits, labels))
    skipped = []
    for precision in artifacts:
        for backend in usable:
            try:
                other = _split_logits(bundle, paths, backend, precision, progress)
            except DsedgeError as e:  # e.g. OpenVINO runs no FP16 file: say so, check the rest
                skipped.append(f"{precision} on {backend}: {e.message}")
                continue
            measured[f"{precision}_top1_agreement_{backend}"] = _agreement(logits, other)
    rows = []
    for name, m in measured.items():
        claim = claims.get(name) or claims.get(_claim_key(name))
        rows.append({"name": name, "measured": m.get("value"), "measured_ci": m.get("ci"),
                     "k": m.get("k"), "n": m.get("n"),
                     "claimed": None if claim is None else claim.get("value"),
                     "claimed_ci": None if claim is None else claim.get("ci"),
                     "rule": None if claim is None else claim.get("rule"),
                     "limit": None if claim is None else claim.get("limit"),
                     "claimed_on": None if claim is None else (claim.get("measured_on") or {}).get("split"),
                     "holds": None if claim is None else holds(claim, m.get("value")),
                     "independent": None if claim is None else not _same_data(claim, on)})
    return {"bundle": str(bundle.root), "split": split, "evaluated_on": on, "rows": rows,
            "backends": usable, "artifacts": artifacts, "skipped": skipped,
            "all_hold": all(r["holds"] for r in rows if r["holds"] is not None)}


def _claim_key(measured_name: str) -> str:
    """'int8_top1_agreement_openvino' is checked against the claim 'int8_top1_agreement'."""
    for backend in ("_onnxruntime", "_openvino", "_tensorrt"):
        if measured_name.endswith(backend):
            return measured_name[: -len(backend)]
    return measured_name


def _same_data(claim: dict[str, Any], on: dict[str, Any]) -> bool:
    prints = {(claim.get(k) or {}).get("fingerprint") for k in ("measured_on", "fitted_on")}
    return on["fingerprint"] in prints


def _available(registry: Any, name: str) -> bool:
    try:
        ok, _reason = registry.get(name).availability()
    except Exception:  # noqa: BLE001 - a backend that cannot even say is not available
        return False
    return bool(ok)


def claims_markdown(result: dict[str, Any]) -> str:
    """The claims table of `dsedge eval BUNDLE` (claims.md)."""
    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * v:.1f} %"

    def iv(c: Any) -> str:
        return "" if not c else f" [{100 * c[0]:.1f}, {100 * c[1]:.1f}]"

    on = result["evaluated_on"]
    lines = [f"# Claims of {result['bundle']} checked on '{result['split']}' ({on['images']} images)", "",
             "| claim | measured here | claimed | claimed on | result |", "|---|---:|---:|---|---|"]
    for r in result["rows"]:
        if r["holds"] is None:
            verdict = "no claim" if r["claimed"] is None else "not judged"
        else:
            verdict = "holds" if r["holds"] else "**does not hold**"
        if r["independent"] is False:
            verdict += " (same images as the claim: not an independent check)"
        counts = f" ({r['k']}/{r['n']})" if r.get("k") is not None else ""
        claimed = pct(r["claimed"]) + iv(r["claimed_ci"])
        if r["rule"] == "at_least":
            claimed = f">= {pct(r['limit'] if r['limit'] is not None else (r['claimed_ci'] or [None])[0])}"
        lines.append(f"| {r['name']} | {pct(r['measured'])}{iv(r['measured_ci'])}{counts} | {claimed} | "
                     f"{r['claimed_on'] or '–'} | {verdict} |")
    return "\n".join(lines) + "\n"


__all__ = ["check_bundle_claims", "check_provenance", "claims_markdown", "holds", "make_claim"]
