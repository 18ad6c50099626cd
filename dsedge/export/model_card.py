"""MODEL_CARD.md: what the model in a bundle is for, how it was trained and measured, where it fails.

Generated from the manifest alone (model block, `training` = the checkpoint's metadata summary
written at export, `clinical` = calibration and operating point from `dsedge risk`, parity,
quality thresholds), so export writes it and `dsedge risk` rewrites it after fitting, and the card
never disagrees with the numbers the runtime applies. Sections follow Mitchell et al.,
"Model Cards for Model Reporting" (2019), cut to what a device team and a clinician need.
"""

from __future__ import annotations

from typing import Any

MODEL_CARD_FILE = "MODEL_CARD.md"
_TRAINING_CONFIG_KEYS = ("epochs", "batch_size", "lr", "optimizer", "focal_gamma", "balance", "pretrained",
                         "image_size", "seed")


def training_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The parts of a checkpoint's metadata a model card needs (stored as manifest["training"])."""
    if not meta:
        return {"random_init": True}
    config = meta.get("config") or {}
    return {
        "epoch": meta.get("epoch"),
        "metrics": meta.get("metrics") or {},
        "config": {k: config[k] for k in _TRAINING_CONFIG_KEYS if k in config},
        "data": config.get("data"),
        "data_fingerprint": meta.get("data_fingerprint"),
        "val_fingerprint": meta.get("val_fingerprint"),
        "focal_alpha": meta.get("focal_alpha"),
        "dsedge_version": meta.get("dsedge_version"),
        "torch_version": meta.get("torch_version"),
    }


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f} %"


def _num(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def _ci(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    ci = entry.get("ci95")
    return f"{_pct(entry['value'])} (95 % CI {_pct(ci[0])} – {_pct(ci[1])})" if ci else _pct(entry["value"])


def _details(m: dict[str, Any]) -> list[str]:
    model, training = m.get("model", {}), m.get("training") or {}
    lines = ["## Model details", "",
             f"- Model: `{model.get('name')}`, {len(m.get('classes', []))} classes ({', '.join(m.get('classes', []))})",
             f"- Input: {m.get('input', {}).get('shape')} normalised RGB; preprocessing {m.get('preprocessing')}"]
    if model.get("random_init"):
        lines.append("- Weights: **random initialisation** (latency work only, never for clinical use)")
    else:
        lines.append(f"- Weights: `{model.get('checkpoint')}` sha256 `{str(model.get('checkpoint_sha256'))[:16]}…`, "
                     f"epoch {training.get('epoch')}")
    if model.get("simam_lambda") is not None:
        lines.append(f"- SimAM lambda {model['simam_lambda']}")
    tools = m.get("tools", {})
    lines.append(f"- Exported with dsedge {tools.get('dsedge')}, torch {tools.get('torch')}, onnx {tools.get('onnx')} "
                 f"({m.get('export', {}).get('created_utc', 'unknown date')})")
    return lines + [""]


def _intended_use() -> list[str]:
    return ["## Intended use", "",
            "Decision support inside a dermatoscope or its companion application: for one dermoscopic image of a "
            "single pigmented skin lesion, say whether the lesion should be **referred** to a dermatologist "
            "(melanoma risk at or above the operating point), which benign class is most likely (NV: nevus, "
            "SK: seborrheic keratosis), or that the image **cannot be assessed**. It does not diagnose.",
            "",
            "Out of scope: clinical (non-dermoscopic) photographs, non-pigmented lesions, mucosal, nail and "
            "acral lesions, any diagnosis outside MEL / NV / SK (basal cell carcinoma, squamous cell carcinoma, "
            "actinic keratosis, vascular lesions, dermatofibroma are never named), children, and use without a "
            "clinician.", ""]


def _training(t: dict[str, Any]) -> list[str]:
    if t.get("random_init") or not t:
        return ["## Training", "", "None: random weights.", ""]
    lines = ["## Training data and procedure", "",
             f"- Data: {('`' + str(t['data']) + '` ') if t.get('data') else ''}training-split fingerprint "
             f"`{str(t.get('data_fingerprint'))[:16]}`, validation `{str(t.get('val_fingerprint'))[:16]}`",
             f"- Recipe: {', '.join(f'{k} {v}' for k, v in (t.get('config') or {}).items()) or 'n/a'}",
             f"- Focal loss alpha per class: {t.get('focal_alpha')}", ""]
    metrics = t.get("metrics") or {}
    if metrics:
        lines += ["Validation metrics of the exported checkpoint (uncalibrated, argmax decisions):", "",
                  "| ACC | balanced ACC | MEL AUC | SK AUC | mean AUC |", "|---|---|---|---|---|",
                  f"| {_pct(metrics.get('accuracy'))} | {_pct(metrics.get('balanced_accuracy'))} | "
                  f"{_num(metrics.get('mel_auc'))} | {_num(metrics.get('sk_auc'))} | {_num(metrics.get('mean_auc'))} |",
                  ""]
    return lines


def _clinical(c: dict[str, Any] | None) -> list[str]:
    lines = ["## Calibration and operating point", ""]
    if not c or not c.get("operating_point"):
        return lines + ["**Not fitted.** Probabilities are raw softmax of a focal-loss model (not calibrated) and "
                        "'refer' only means MEL is the top class. Run `dsedge risk BUNDLE --data DIR` before any "
                        "clinical use.", ""]
    cal, op, src = c.get("calibration", {}), c["operating_point"], c.get("fitted_on", {})
    lines += [f"Fitted on the `{src.get('split')}` split of `{src.get('data')}` ({src.get('images')} images) "
              f"with `{src.get('artifact')}`.", "",
              f"- Temperature scaling: T = {_num(c.get('temperature'))}; expected calibration error "
              f"{_num(cal.get('ece_before'))} -> {_num(cal.get('ece_after'))} (reliability diagram: "
              "`reliability.png`)",
              f"- Melanoma operating point: refer when calibrated P(MEL) >= {_num(op.get('threshold'), 4)} "
              f"(target sensitivity {_pct(op.get('target_sensitivity'))})",
              f"- Sensitivity {_ci(op.get('sensitivity'))}, specificity {_ci(op.get('specificity'))} "
              f"on {op.get('positives')} melanomas / {op.get('negatives')} others (ROC: `roc.png`)",
              f"- Uncertain when the top-2 margin of calibrated probabilities is below {c.get('uncertain_margin')}"
              f" ({_pct(c.get('uncertain_rate'))} of the fitting split)"]
    lines += [f"- **Warning:** {w}" for w in c.get("warnings") or []]
    return lines + [""]


def _quality(c: dict[str, Any] | None) -> list[str]:
    from dsedge.runtime.quality import QualityThresholds

    t = QualityThresholds.from_dict((c or {}).get("quality")).to_dict()
    return ["## Input quality checks", "",
            "An image failing any check gets `cannot assess` and no model output: " +
            ", ".join(f"{k} {v}" for k, v in t.items()) +
            " (thresholds measured on 8,141 real ISIC / HAM10000 images, see `dsedge.runtime.quality`).", ""]


def _limitations() -> list[str]:
    return ["## Limitations and risks", "",
            "- ISIC 2017 validation holds 30 melanomas: one missed melanoma moves sensitivity by 3.3 points; read "
            "the confidence intervals, not the point values.",
            "- ISIC images come mostly from fair-skinned patients (Fitzpatrick I–III) and a few centres and "
            "devices; performance on darker skin, other dermatoscopes and other populations is unmeasured.",
            "- Calibration holds for data like the fitting split; a new device or population needs its own fit.",
            "- Heat-maps (class activation maps) show where the model's evidence lies at 7x7 resolution; they are "
            "not a segmentation and not an explanation of correctness.",
            "- FP16 / INT8 / bf16 artifacts can flip near-tie predictions (see parity and bench records).", ""]


def render_model_card(manifest: dict[str, Any]) -> str:
    """MODEL_CARD.md text for a bundle manifest."""
    title = f"# Model card: {manifest.get('model', {}).get('name')} dermoscopy classifier"
    parity = manifest.get("parity", {}).get("artifacts", {})
    arts = ["## Artifacts", "", "| file | kind | precision | parity vs PyTorch (top-1 agreement) |", "|---|---|---|---|"]
    for name, entry in manifest.get("artifacts", {}).items():
        if entry.get("kind") in ("onnx", "onnx-inline", "tensorrt"):
            agree = parity.get(name, {}).get("top1_agreement")
            arts.append(f"| {name} | {entry.get('kind')} | {entry.get('precision')} | {_pct(agree)} |")
    clinical = manifest.get("clinical")
    parts = [[title, ""], _details(manifest), _intended_use(), _training(manifest.get("training") or {}),
             _clinical(clinical), _quality(clinical), _limitations(), arts + [""]]
    return "\n".join(line for part in parts for line in part)
