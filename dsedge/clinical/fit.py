"""`fit_bundle_risk`: fit temperature + melanoma operating point on a tuning split, state what they do
on images they were not fitted on (DESIGN §3a), store both in a bundle.

1. run the bundle's own FP32 ONNX through the torch-free `Predictor` on the tuning images (the
   same preprocessing and engine as on the device) and, when there is one, the reporting split;
2. `fit_risk`: temperature by NLL, ECE before/after, the threshold on calibrated P(MEL) reaching
   the target sensitivity — all fitted on the tuning split — and the **claim**: sensitivity and
   specificity with exact (Clopper-Pearson) intervals measured on the reporting split, or, when
   the tuning split is all the labelled data the model has not seen, cross-fitted on it
   (`dsedge.clinical.crossfit`); the in-sample numbers are kept only under `in_sample`;
3. write the manifest's `clinical` section, the claims, `reliability.png`, `roc.png` and a regenerated
   `MODEL_CARD.md` into the bundle in one atomic update (`dsedge.export.bundle_update`).

Which split tunes is `dsedge.data.roles.resolve_roles`: the slice of the training data the
checkpoint held out when it has one, else the split the user names (cross-fitted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.clinical.calibration import (
    ECE_BINS,
    LOG_T_BOUNDS,
    expected_calibration_error,
    nll,
    reliability_bins,
    softmax,
)
from dsedge.clinical.claims import check_provenance, make_claim
from dsedge.clinical.crossfit import (
    DEFAULT_FOLDS,
    counts_claim,
    cross_fitted,
    fit_point,
    referred,
    threshold_interval,
)
from dsedge.clinical.operating_point import (
    BOOTSTRAP_RESAMPLES,
    DEFAULT_TARGET_SENSITIVITY,
    operating_point_report,
)
from dsedge.errors import DataError, DsedgeError
from dsedge.runtime.decision import DEFAULT_UNCERTAIN_MARGIN, MELANOMA, top2_margin

RELIABILITY_FILE = "reliability.png"
ROC_FILE = "roc.png"
CHUNK = 16


def fit_risk(logits: np.ndarray, labels: np.ndarray, classes: list[str], *,
             target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
             uncertain_margin: float = DEFAULT_UNCERTAIN_MARGIN,
             resamples: int = BOOTSTRAP_RESAMPLES,
             report: tuple[np.ndarray, np.ndarray] | None = None,
             folds: int = DEFAULT_FOLDS) -> dict[str, Any]:
    """The manifest's `clinical` block (without `fitted_on`) from tuning logits and integer labels.

    Everything is fitted on (`logits`, `labels`). The operating point's `sensitivity` and
    `specificity` are the claim: measured on `report` = (logits, labels) of images the fit never
    saw, or cross-fitted over `folds` folds of the tuning images when `report` is None; each has
    exact 95 % intervals and a `method`. The in-sample numbers stay under `in_sample`, labelled.
    """
    if MELANOMA not in classes:
        raise DsedgeError(f"the model's classes {classes} have no {MELANOMA}: no melanoma operating point to fit")
    labels = np.asarray(labels, dtype=np.int64)
    mel = classes.index(MELANOMA)
    positive = labels == mel
    if positive.all() or not positive.any():
        raise DataError("the fitting split needs both melanomas and other lesions")
    t, threshold = fit_point(logits, labels, mel, target_sensitivity)
    warnings = []
    if not np.exp(LOG_T_BOUNDS[0]) * 1.01 < t < np.exp(LOG_T_BOUNDS[1]) * 0.99:
        warnings.append(f"temperature {t:.3g} is at its search bound: the logits carry almost no information on "
                        "this split (an untrained model?)")
    raw, cal = softmax(logits), softmax(logits, t)
    in_sample = operating_point_report(positive, cal[:, mel], threshold, resamples)
    if report is not None:
        r_logits, r_labels = report
        r_labels = np.asarray(r_labels, dtype=np.int64)
        claim = {"method": "held out (reporting split)", **counts_claim(
            referred(r_logits, mel, t, threshold), r_labels == mel)}
    else:
        claim = cross_fitted(logits, labels, mel, target_sensitivity, folds)
    for key in ("sensitivity", "specificity"):
        claim[key]["method"] = claim["method"]
        claim[key]["ci95"] = claim[key]["ci"]  # the name older readers use
    uncertain = top2_margin(cal) < uncertain_margin
    correct = cal.argmax(1) == labels
    return {
        "temperature": t,
        "calibration": {
            "method": "temperature scaling (NLL)", "bins": ECE_BINS,
            "ece_before": expected_calibration_error(raw, labels), "ece_after": expected_calibration_error(cal, labels),
            "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, t),
        },
        "operating_point": {
            "class": MELANOMA, "target_sensitivity": target_sensitivity, "threshold": float(threshold),
            "threshold_ci95": threshold_interval(logits, labels, mel, target_sensitivity),
            "sensitivity": claim["sensitivity"], "specificity": claim["specificity"],
            "claim_method": claim["method"],
            "fold_thresholds": claim.get("fold_thresholds"),
            "positives": int(positive.sum()), "negatives": int((~positive).sum()),
            "in_sample": {"label": "in-sample: fitted and measured on the same images (optimistic by construction)",
                          "sensitivity": in_sample["sensitivity"], "specificity": in_sample["specificity"]},
        },
        "uncertain_margin": uncertain_margin,
        "uncertain_rate": float(uncertain.mean()),
        "accuracy_when_certain": float(correct[~uncertain].mean()) if (~uncertain).any() else None,
        "accuracy_when_uncertain": float(correct[uncertain].mean()) if uncertain.any() else None,
        "warnings": warnings,
    }


def split_logits(predictor: Any, paths: list[Path], progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Raw logits of the predictor's engine over image files (bundle preprocessing, no quality gate)."""
    from dsedge.runtime.preprocess import preprocess_files

    out = []
    for i in range(0, len(paths), CHUNK):
        chunk = paths[i:i + CHUNK]
        out.append(predictor.infer(preprocess_files(chunk, predictor.preprocessing))["logits"])
        if progress:
            progress(len(chunk))
    return np.concatenate(out).astype(np.float64)


def write_plots(logits: np.ndarray, labels: np.ndarray, classes: list[str],
                block: dict[str, Any], names: dict[str, Path], split: str = "tuning") -> None:
    """reliability.png (before/after temperature) and roc.png (operating point marked) at `names`."""
    from dsedge.clinical.plots import plot_reliability, plot_roc

    t, cal = block["temperature"], block["calibration"]
    plot_reliability({"softmax": (reliability_bins(softmax(logits), labels), cal["ece_before"]),
                      f"temperature {t:.2f}": (reliability_bins(softmax(logits, t), labels), cal["ece_after"])},
                     names[RELIABILITY_FILE], title=f"calibration on '{split}' ({len(labels)} images)", split=split)
    op = block["operating_point"]["in_sample"]  # the point on this split's own ROC curve
    plot_roc(labels, softmax(logits, t), classes, names[ROC_FILE],
             point=(MELANOMA, op["sensitivity"]["value"], op["specificity"]["value"]),
             title=f"ROC on '{split}', refer at P(MEL) >= {block['operating_point']['threshold']:.3f}")


def risk_claims(block: dict[str, Any], fitted_on: dict[str, Any], measured_on: dict[str, Any],
                aucs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The claims `dsedge risk` adds to the manifest's `claims` (checked by `dsedge eval BUNDLE`)."""
    op = block["operating_point"]
    out = {}
    for key in ("sensitivity", "specificity"):
        c = op[key]
        out[f"melanoma_{key}"] = make_claim(
            c["value"], c["ci"], "within", measured_on, fitted_on, interval=c["interval"], k=c["k"], n=c["n"],
            what=f"melanoma {key} at the operating point P(MEL) >= {op['threshold']:.4f}")
    for name in ("mean_auc", "mel_auc"):
        entry = aucs.get(name) or {}
        if entry.get("value") is not None:
            out[name] = make_claim(entry["value"], entry.get("ci"), "within", aucs["measured_on"], None,
                                   interval="class-stratified bootstrap 95 %", what=f"FP32 {name.replace('_', ' ')}")
    return out


def _aucs(logits: np.ndarray, labels: np.ndarray, classes: list[str], resamples: int,
          measured_on: dict[str, Any]) -> dict[str, Any]:
    from dsedge.clinical.evaluation import bootstrap_intervals, metric_values

    probs = softmax(logits)
    values, ci = metric_values(labels, probs, classes), bootstrap_intervals(labels, probs, classes, resamples)
    keys = {"mean_auc": "mean_auc", "mel_auc": "auc_MEL"}
    return {"measured_on": measured_on, **{k: {"value": values.get(v), "ci": ci.get(v)} for k, v in keys.items()}}


def fit_bundle_risk(bundle_path: str | Path, data: str | Path, split: str = "val", *,
                    report_split: str | None = None,
                    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
                    uncertain_margin: float = DEFAULT_UNCERTAIN_MARGIN, resamples: int = BOOTSTRAP_RESAMPLES,
                    folds: int = DEFAULT_FOLDS,
                    backend: str = "onnxruntime", precision: str = "fp32",
                    progress: Callable[[int], None] | None = None,
                    on_total: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Fit on the tuning split (`dsedge.data.roles`), claim on unseen images, store; returns the block."""
    from dsedge.data.roles import resolve_roles, split_record, usable_slice
    from dsedge.export.bundle_update import bundle_update
    from dsedge.export.model_card import MODEL_CARD_FILE, render_model_card
    from dsedge.runtime.bundle import load_bundle
    from dsedge.runtime.predict import Predictor
    from dsedge.runtime.quality import QualityThresholds, check_files

    bundle = load_bundle(bundle_path, verify=True)
    if split == "test" and not usable_slice(bundle.manifest)[0]:  # the named split would tune
        raise DsedgeError("refusing to fit the operating point on the test split: it would no longer measure anything",
                          "fit on --split val; report the test split with `dsedge eval BUNDLE --split test`")
    roles = resolve_roles(bundle.manifest, data, split, report_split)
    paths = [s.path for s in roles.tuning.samples]
    report_paths = [s.path for s in roles.reporting.samples] if roles.reporting else []
    if on_total:
        on_total(len(paths) + len(report_paths))
    with Predictor(bundle, backend=backend, precision=precision, quality_checks=False) as predictor:
        logits = split_logits(predictor, paths, progress)
        r_logits = split_logits(predictor, report_paths, progress) if report_paths else None
        runner = predictor.info.to_dict()
    labels = np.asarray(roles.tuning.labels, dtype=np.int64)
    r_labels = np.asarray(roles.reporting.labels, dtype=np.int64) if roles.reporting else None
    block = fit_risk(logits, labels, bundle.classes, target_sensitivity=target_sensitivity,
                     uncertain_margin=uncertain_margin, resamples=resamples, folds=folds,
                     report=None if r_logits is None else (r_logits, r_labels))
    thresholds = QualityThresholds.from_dict((bundle.manifest.get("clinical") or {}).get("quality"))
    flagged = check_files(paths, thresholds)
    block["quality"] = thresholds.to_dict()
    fitted_on = split_record(roles.tuning, "tuning")
    fitted_on.update({
        "source": roles.source,
        "artifact": runner.get("extra", {}).get("file") or runner.get("extra", {}).get("source"),
        "runner": f"{runner['backend']} {runner['precision']} {runner['version']}",
        "quality_flagged": len(flagged), "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"note": roles.note} if roles.note else {}),
    })
    block["fitted_on"] = fitted_on
    if roles.reporting is not None:
        measured_on = split_record(roles.reporting, "reporting", block["operating_point"]["claim_method"])
        aucs = _aucs(r_logits, r_labels, bundle.classes, resamples, measured_on)
    else:  # AUCs on the tuning split are reported in the model card, not claimed: that split may have
        # chosen the recipe or the epoch, and nothing about the threshold makes them cross-fittable
        measured_on = split_record(roles.tuning, "tuning", block["operating_point"]["claim_method"])
        aucs = {}
    block["operating_point"]["measured_on"] = measured_on
    for key in ("sensitivity", "specificity"):
        block["operating_point"][key]["split"] = measured_on["split"]
    claims = {**(bundle.manifest.get("claims") or {}), **risk_claims(block, fitted_on, measured_on, aucs)}
    check_provenance(claims)
    with bundle_update(bundle) as update:
        names = {f: update.stage(f) for f in (RELIABILITY_FILE, ROC_FILE, MODEL_CARD_FILE)}
        write_plots(logits, labels, bundle.classes, block, names, roles.tuning.name)
        update.set_key("clinical", block)
        update.set_key("claims", claims)
        card = render_model_card({**bundle.manifest, "clinical": block, "claims": claims})
        names[MODEL_CARD_FILE].write_text(card, encoding="utf-8")
        for f in (RELIABILITY_FILE, ROC_FILE):
            update.add_artifact(f, "report", "n/a")
        update.add_artifact(MODEL_CARD_FILE, "model-card", "n/a")
    from dsedge.export.vectors import write_vectors

    write_vectors(bundle.root)  # the golden decisions follow the new operating point
    return block
