"""`fit_bundle_risk`: fit temperature + melanoma operating point on a data split, store them in a bundle.

One call over a bundle and a labelled split (the lead runs it on the trained model):

1. run the bundle's own FP32 ONNX through the torch-free `Predictor` on every image of the split
   (the same preprocessing and engine as on the device) and keep the logits;
2. `fit_risk`: temperature by NLL, ECE before/after, the threshold on calibrated P(MEL) reaching the
   target sensitivity, sensitivity/specificity with stratified bootstrap 95 % intervals, and how
   often the top-2 margin falls below the "uncertain" margin;
3. write `manifest["clinical"]`, `reliability.png`, `roc.png` and a regenerated `MODEL_CARD.md` into
   the bundle in one atomic update (`dsedge.export.bundle_update`).

Temperature and threshold are fitted on the same split: temperature scaling never changes the
ranking of P(MEL), so fitting it first does not bias the threshold's sensitivity on that split.
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
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)
from dsedge.clinical.operating_point import (
    BOOTSTRAP_RESAMPLES,
    DEFAULT_TARGET_SENSITIVITY,
    choose_threshold,
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
             resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """The manifest's `clinical` block (without `fitted_on`) from logits and integer labels."""
    if MELANOMA not in classes:
        raise DsedgeError(f"the model's classes {classes} have no {MELANOMA}: no melanoma operating point to fit")
    labels = np.asarray(labels, dtype=np.int64)
    mel = classes.index(MELANOMA)
    positive = labels == mel
    if positive.all() or not positive.any():
        raise DataError("the fitting split needs both melanomas and other lesions")
    t = fit_temperature(logits, labels)
    warnings = []
    if not np.exp(LOG_T_BOUNDS[0]) * 1.01 < t < np.exp(LOG_T_BOUNDS[1]) * 0.99:
        warnings.append(f"temperature {t:.3g} is at its search bound: the logits carry almost no information on "
                        "this split (an untrained model?)")
    raw, cal = softmax(logits), softmax(logits, t)
    threshold = choose_threshold(positive, cal[:, mel], target_sensitivity)
    point = operating_point_report(positive, cal[:, mel], threshold, resamples)
    uncertain = top2_margin(cal) < uncertain_margin
    correct = cal.argmax(1) == labels
    return {
        "temperature": t,
        "calibration": {
            "method": "temperature scaling (NLL)", "bins": ECE_BINS,
            "ece_before": expected_calibration_error(raw, labels), "ece_after": expected_calibration_error(cal, labels),
            "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, t),
        },
        "operating_point": {"class": MELANOMA, "target_sensitivity": target_sensitivity, **point},
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
                block: dict[str, Any], names: dict[str, Path]) -> None:
    """reliability.png (before/after temperature) and roc.png (operating point marked) at `names`."""
    from dsedge.clinical.plots import plot_reliability, plot_roc

    t, cal = block["temperature"], block["calibration"]
    plot_reliability({"softmax": (reliability_bins(softmax(logits), labels), cal["ece_before"]),
                      f"temperature {t:.2f}": (reliability_bins(softmax(logits, t), labels), cal["ece_after"])},
                     names[RELIABILITY_FILE], title=f"calibration on {len(labels)} images")
    op = block["operating_point"]
    plot_roc(labels, softmax(logits, t), classes, names[ROC_FILE],
             point=(MELANOMA, op["sensitivity"]["value"], op["specificity"]["value"]),
             title=f"ROC, refer at P(MEL) >= {op['threshold']:.3f}")


def fit_bundle_risk(bundle_path: str | Path, data: str | Path, split: str = "val", *,
                    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
                    uncertain_margin: float = DEFAULT_UNCERTAIN_MARGIN, resamples: int = BOOTSTRAP_RESAMPLES,
                    backend: str = "onnxruntime", precision: str = "fp32",
                    progress: Callable[[int], None] | None = None,
                    on_total: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Fit on `split` of `data`, store in the bundle; returns the `clinical` block."""
    from dsedge.data import load_split
    from dsedge.export.bundle_update import bundle_update
    from dsedge.export.model_card import MODEL_CARD_FILE, render_model_card
    from dsedge.runtime.bundle import load_bundle
    from dsedge.runtime.predict import Predictor
    from dsedge.runtime.quality import QualityThresholds, check_files

    if split == "test":
        raise DsedgeError("refusing to fit the operating point on the test split: it would no longer measure anything",
                          "fit on --split val; report the test split with `dsedge eval --bundle BUNDLE --split test`")
    bundle = load_bundle(bundle_path, verify=True)
    ds = load_split(data, split, classes=bundle.classes)
    if len(ds) == 0:
        raise DataError(f"{data}: the '{split}' split is empty")
    paths = [s.path for s in ds.samples]
    if on_total:
        on_total(len(paths))
    with Predictor(bundle, backend=backend, precision=precision, quality_checks=False) as predictor:
        logits = split_logits(predictor, paths, progress)
        runner = predictor.info.to_dict()
    labels = np.asarray(ds.labels, dtype=np.int64)
    block = fit_risk(logits, labels, bundle.classes, target_sensitivity=target_sensitivity,
                     uncertain_margin=uncertain_margin, resamples=resamples)
    thresholds = QualityThresholds.from_dict((bundle.manifest.get("clinical") or {}).get("quality"))
    flagged = check_files(paths, thresholds)
    block["quality"] = thresholds.to_dict()
    block["fitted_on"] = {
        "data": str(data), "split": split, "images": len(paths), "fingerprint": ds.fingerprint(),
        "artifact": runner.get("extra", {}).get("file") or runner.get("extra", {}).get("source"),
        "runner": f"{runner['backend']} {runner['precision']} {runner['version']}",
        "quality_flagged": len(flagged), "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with bundle_update(bundle) as update:
        names = {f: update.stage(f) for f in (RELIABILITY_FILE, ROC_FILE, MODEL_CARD_FILE)}
        write_plots(logits, labels, bundle.classes, block, names)
        update.set_key("clinical", block)
        card = render_model_card({**bundle.manifest, "clinical": block})
        names[MODEL_CARD_FILE].write_text(card, encoding="utf-8")
        for f in (RELIABILITY_FILE, ROC_FILE):
            update.add_artifact(f, "report", "n/a")
        update.add_artifact(MODEL_CARD_FILE, "model-card", "n/a")
    return block
