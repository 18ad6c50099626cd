"""MODEL_CARD.md: what the model in a bundle is for, how it was trained and measured, where it fails.

Generated from the manifest alone (model block, `training` = the checkpoint's metadata summary
written at export, `clinical` = calibration and operating point from `dsedge risk`, parity,
quality thresholds), so export writes it and `dsedge risk` rewrites it after fitting, and the card
never disagrees with the numbers the runtime applies. Sections follow Mitchell et al.,
"Model Cards for Model Reporting" (2019), cut to what a device team and a clinician need.

The card ships to devices: it opens with "not a medical device" and the licence the weights
inherit from their training data (HAM10000 is CC BY-NC), names data sets by name and fingerprint
only (never a workstation path), warns when the claimed sensitivity was measured on the split the
threshold was fitted on, and takes the heat-map resolution from the bundle's `cam` output.
`refresh_model_card(bundle)` rewrites it after any step that changes the manifest.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

from dsedge.bundle import read_manifest

MODEL_CARD_FILE = "MODEL_CARD.md"
_TRAINING_CONFIG_KEYS = ("epochs", "batch_size", "lr", "optimizer", "focal_gamma", "balance", "pretrained",
                         "image_size", "seed")


#: Licences of the data sets dsedge knows, by a word in the data set's name (a model inherits the
#: non-commercial clause of its training data).
DATA_LICENCES = {
    "ham10000": "CC BY-NC 4.0 (HAM10000)",
    "isic": "CC BY-NC (ISIC archive images; some CC0)",
}


def dataset_name(path: str | None) -> str | None:
    """A data set's name from its path, never the path itself: a bundle ships to devices and must not
    carry the workstation's folders. A CSV (`.../ham10000/labels.csv`) is named by its folder."""
    if not path:
        return None
    p = PurePath(str(path).replace("\\", "/"))
    return (p.parent.name if p.suffix else p.name) or None


def training_datasets(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Names (and fingerprints) of the data a checkpoint was trained on, without local paths."""
    config = meta.get("config") or {}
    main = meta.get("data_name") or dataset_name(meta.get("data") or config.get("data"))
    if main is None and meta.get("shipped_name") == "isic2017":
        main = "isic2017"  # the shipped weights: ISIC 2017 train (+ --extra-train, listed below)
    sets = [{"name": main or "unnamed", "role": "train + validation",
             "fingerprint": str(meta.get("data_fingerprint") or "")[:16] or None}]
    sets += [{"name": dataset_name(p), "role": "extra train"} for p in config.get("extra_train") or []]
    return sets


def data_licence(datasets: list[dict[str, Any]]) -> str:
    """The licence a model inherits from its training data, or a line saying it is unknown."""
    found, unknown = [], []
    for d in datasets:
        name = str(d.get("name") or "").lower()
        match = next((lic for key, lic in DATA_LICENCES.items() if key in name), None)
        (found if match else unknown).append(match or d.get("name"))
    text = "; ".join(dict.fromkeys(found))
    if any("NC" in f for f in found):
        text = f"non-commercial use only: trained on data under {text}"
    if unknown:
        text += ("; " if text else "") + f"unknown for {', '.join(map(str, unknown))}: check before distributing"
    return text


def training_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The parts of a checkpoint's metadata a model card needs (stored as the manifest's `training`)."""
    if not meta:
        return {"random_init": True}
    config = meta.get("config") or {}
    datasets = training_datasets(meta)
    return {
        "epoch": meta.get("epoch"),
        "metrics": meta.get("metrics") or {},
        "config": {k: config[k] for k in _TRAINING_CONFIG_KEYS if k in config},
        "datasets": datasets,
        "licence": data_licence(datasets),
        "data_fingerprint": meta.get("data_fingerprint"),
        "val_fingerprint": meta.get("val_fingerprint"),
        "focal_alpha": meta.get("focal_alpha"),
        "tuning_split": meta.get("tuning_split"),  # held-out slice record (dsedge.data.splits); roles read it
        "tuning_metrics": meta.get("tuning_metrics"),
        "selected_on": meta.get("selected_on"),
        "init_excludes_tuning": meta.get("init_excludes_tuning"),
        "dsedge_version": meta.get("dsedge_version"),
        "torch_version": meta.get("torch_version"),
    }


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f} %"


def _num(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def _ci(entry: dict[str, Any] | None) -> str:
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "n/a"
    ci = entry.get("ci", entry.get("ci95"))
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
    sets = t.get("datasets") or [{"name": dataset_name(t.get("data")) or "unnamed", "role": "train"}]
    lines = ["## Training data and procedure", "",
             "- Data sets: " + "; ".join(f"{d.get('name')} ({d.get('role')})" for d in sets),
             f"- Training-split fingerprint `{str(t.get('data_fingerprint'))[:16]}`, validation "
             f"`{str(t.get('val_fingerprint'))[:16]}`",
             f"- Recipe: {', '.join(f'{k} {v}' for k, v in (t.get('config') or {}).items()) or 'n/a'}",
             f"- Focal loss alpha per class: {t.get('focal_alpha')}", ""]
    metrics = t.get("metrics") or {}
    if metrics:
        lines += ["Validation metrics of the exported checkpoint (uncalibrated, argmax decisions; the validation "
                  "split also guided the training recipe, so these are not an independent test):", "",
                  "| ACC | balanced ACC | MEL AUC | SK AUC | mean AUC |", "|---|---|---|---|---|",
                  f"| {_pct(metrics.get('accuracy'))} | {_pct(metrics.get('balanced_accuracy'))} | "
                  f"{_num(metrics.get('mel_auc'))} | {_num(metrics.get('sk_auc'))} | {_num(metrics.get('mean_auc'))} |",
                  ""]
    return lines


def _status(m: dict[str, Any]) -> list[str]:
    """Regulatory status and licence: the first thing a device team must read."""
    t = m.get("training") or {}
    licence = t.get("licence") or (data_licence(t["datasets"]) if t.get("datasets") else
                                   "random weights: no training data" if t.get("random_init") else "unknown")
    return ["## Status and licence", "",
            "- **Not a medical device.** Not cleared or approved by any regulator (FDA, MDR / CE, MHRA, Health "
            "Canada); a research and engineering artifact. It must not be used to diagnose or to decide care.",
            f"- Licence of the weights: {licence}.", ""]


def _in_sample(c: dict[str, Any]) -> str | None:
    """A warning when the claimed sensitivity / specificity come from the split the threshold was fitted on."""
    op, fitted = c.get("operating_point") or {}, (c.get("fitted_on") or {}).get("split")
    splits = {e.get("split") for e in (op.get("sensitivity"), op.get("specificity")) if isinstance(e, dict)}
    measured = splits - {None}
    if measured and fitted not in measured:
        return None
    where = f"the `{fitted}` split" if fitted else "the fitting split"
    return (f"sensitivity and specificity are measured on {where}, the same images the threshold was fitted on "
            "(in-sample): they are optimistic; expect lower values on new patients")


def _clinical(c: dict[str, Any] | None) -> list[str]:
    lines = ["## Calibration and operating point", ""]
    if not c or not c.get("operating_point"):
        return lines + ["**Not fitted.** Probabilities are raw softmax of a focal-loss model (not calibrated) and "
                        "'refer' only means MEL is the top class. Run `dsedge risk BUNDLE --data DIR` before any "
                        "clinical use.", ""]
    cal, op, src = c.get("calibration", {}), c["operating_point"], c.get("fitted_on", {})
    data = src.get("name") or dataset_name(src.get("data"))
    lines += [f"Fitted on the `{src.get('split')}` split of `{data}` ({src.get('images')} images"
              f"{', fingerprint `' + str(src['fingerprint'])[:16] + '`' if src.get('fingerprint') else ''}) "
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
    lines += [f"- **Warning:** {w}" for w in [*(c.get("warnings") or []), _in_sample(c)] if w]
    return lines + [""]


def _quality(c: dict[str, Any] | None) -> list[str]:
    from dsedge.runtime.quality import QualityThresholds

    t = QualityThresholds.from_dict((c or {}).get("quality")).to_dict()
    return ["## Input quality checks", "",
            "An image failing any check gets `cannot assess` and no model output: " +
            ", ".join(f"{k} {v}" for k, v in t.items()) +
            " (thresholds measured on 8,141 real ISIC / HAM10000 images, see `dsedge.runtime.quality`).", ""]


def cam_grid(manifest: dict[str, Any]) -> str | None:
    """'4x4' from the manifest's `cam` output shape, or None when the bundle has no heat-maps."""
    for out in read_manifest(manifest).outputs:
        shape = out.get("shape") or []
        if out.get("name") == "cam" and len(shape) == 4 and all(isinstance(v, int) for v in shape[2:]):
            return f"{shape[2]}x{shape[3]}"
    return None


def _limitations(manifest: dict[str, Any]) -> list[str]:
    return ["## Limitations and risks", "",
            "- ISIC 2017 validation holds 30 melanomas: one missed melanoma moves sensitivity by 3.3 points; read "
            "the confidence intervals, not the point values.",
            "- ISIC images come mostly from fair-skinned patients (Fitzpatrick I–III) and a few centres and "
            "devices; performance on darker skin, other dermatoscopes and other populations is unmeasured.",
            "- Calibration holds for data like the fitting split; a new device or population needs its own fit.",
            (f"- Heat-maps (class activation maps) show where the model's evidence lies at {cam_grid(manifest)} "
             "resolution over the model's centre crop; they are not a segmentation and not an explanation of "
             "correctness." if cam_grid(manifest) else
             "- No heat-maps: this bundle was exported without the `cam` output (`dsedge export --cam`)."),
            "- FP16 / INT8 / bf16 artifacts can flip near-tie predictions (see parity and bench records).", ""]


def render_model_card(manifest: dict[str, Any]) -> str:
    """MODEL_CARD.md text for a bundle manifest."""
    m = read_manifest(manifest)
    title = f"# Model card: {m.model.get('name')} dermoscopy classifier"
    parity = m.parity.get("artifacts", {})
    arts = ["## Artifacts", "", "| file | kind | precision | parity vs PyTorch (top-1 agreement) |", "|---|---|---|---|"]
    for name, entry in m.artifacts.items():
        if entry.get("kind") in ("onnx", "onnx-inline", "tensorrt"):
            agree = parity.get(name, {}).get("top1_agreement")
            arts.append(f"| {name} | {entry.get('kind')} | {entry.get('precision')} | {_pct(agree)} |")
    clinical = m.clinical or None
    parts = [[title, ""], _status(manifest), _details(manifest), _intended_use(),
             _training(m.training), _clinical(clinical), _quality(clinical),
             _limitations(manifest), arts + [""]]
    return "\n".join(line for part in parts for line in part)


def refresh_model_card(bundle_dir: str | Path) -> Path:
    """Rewrite a bundle's MODEL_CARD.md from its manifest as it is now (after `calibrate` or `risk`).

    The card is generated, never edited: any step that changes the manifest calls this so the card a
    device ships with states the numbers the runtime applies. Atomic, through `bundle_update`.
    """
    from dsedge.bundle import bundle_update, load_bundle

    bundle = load_bundle(bundle_dir, verify=True)
    with bundle_update(bundle) as update:
        update.stage(MODEL_CARD_FILE).write_text(render_model_card(bundle.manifest), encoding="utf-8")
        update.add_artifact(MODEL_CARD_FILE, "model-card", "n/a")
    return bundle.root / MODEL_CARD_FILE
