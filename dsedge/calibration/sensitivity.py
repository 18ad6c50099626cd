"""Which layers stay float: layer groups, `--keep-fp` selectors, and the per-group sensitivity analysis.

DS-ResNet50's depthwise convs and attention are the usual INT8 trouble spots
(DESIGN §5). Rather than guess: when the fully quantized model misses the
budget (`budget.py`), we quantize one group at a time (stem, each ResNet
stage, the head, all depthwise convs), measure on the validation split how much
each costs in agreement with FP32, melanoma AUC, ACC and mean AUC, and keep the
groups most harmful to the failed terms in float, one by one, until every term
holds. The report is printed by the CLI and saved as JSON + Markdown
in the bundle so the choice can be audited later.

Groups come from the exporter's `pkg.torch.onnx.name_scopes` node metadata
(the PyTorch module path, which survives ONNX optimisation); models without it
fall back to node names. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dsedge.calibration.budget import (
    Budget,
    OperatingPoint,
    failed_terms,
    judge,
    mel_recall,
    mel_referrals_changed,
    met,
)
from dsedge.comparator import compare as compare_outputs
from dsedge.comparator import delta
from dsedge.errors import CalibrationError
from dsedge.export.simam_function import SCOPES_KEY, metadata_list
from dsedge.utils.io import atomic_write_json, atomic_write_text

MODULE_KEY = "dsedge.module"
STEM_MODULES = {"conv1", "bn1", "relu", "maxpool", "stem"}
HEAD_MODULES = {"avgpool", "fc", "flatten", "head", "classifier", ""}
#: `--keep-fp` kinds: a word that selects a kind of layer rather than a named node or module.
KINDS = ("depthwise", "simam", "conv", "gemm", "add", "stem", "head")
_STAGE_RE = re.compile(r"(layer\d+)")


def node_module(node: onnx.NodeProto) -> str | None:
    """PyTorch module path of an exported node ('layer1.0.dual.bn_d1'), or None without metadata.

    `dsedge.module` (set by our SimAM outlining on the function calls) wins over
    the exporter's `name_scopes` list, whose second-to-last entry is the module.
    """
    props = {p.key: p.value for p in node.metadata_props}
    if MODULE_KEY in props:
        return props[MODULE_KEY]
    scopes = metadata_list(node, SCOPES_KEY)
    if scopes is None:
        return None
    return scopes[-2] if len(scopes) >= 2 else ""  # "" = a top-level node of the model


def node_stage(node: onnx.NodeProto) -> str:
    """'stem', 'layer1'..'layer4', 'head' (or the first module name for other architectures)."""
    module = node_module(node)
    if module is None:
        m = _STAGE_RE.search(node.name)
        return m.group(1) if m else "other"
    top = module.split(".")[0]
    if top in STEM_MODULES:
        return "stem"
    if top in HEAD_MODULES:
        return "head"
    return top


def _is_depthwise(node: onnx.NodeProto, weights: dict[str, tuple[int, ...]]) -> bool:
    if node.op_type != "Conv" or len(node.input) < 2:
        return False
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    shape = weights.get(node.input[1])
    return group > 1 and shape is not None and len(shape) >= 2 and shape[1] == 1


def _is_simam(node: onnx.NodeProto) -> bool:
    if node.op_type == "SimAM":
        return True
    module = node_module(node) or node.name
    return "simam" in module.split(".")[-1].lower() if module else False


def node_kinds(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Kind selector -> names of the graph nodes it covers."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    for node in model.graph.node:
        if not node.name:
            continue
        if _is_depthwise(node, weights):
            out["depthwise"].append(node.name)
        if _is_simam(node):
            out["simam"].append(node.name)
        if node.op_type in ("Conv", "ConvTranspose"):
            out["conv"].append(node.name)
        if node.op_type in ("Gemm", "MatMul"):
            out["gemm"].append(node.name)
        if node.op_type == "Add":
            out["add"].append(node.name)
        stage = node_stage(node)
        if stage in ("stem", "head"):
            out[stage].append(node.name)
    return out


def node_groups(model: onnx.ModelProto) -> dict[str, list[str]]:
    """The sensitivity groups: each stage in graph order, then all depthwise convs (if any)."""
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.name and node.op_type not in ("Constant", "Shape"):
            groups.setdefault(node_stage(node), []).append(node.name)
    dw = node_kinds(model)["depthwise"]
    if dw:
        groups["depthwise"] = dw
    return groups


def resolve_keep_fp(model: onnx.ModelProto, tokens: Sequence[str]) -> list[str]:
    """Node names selected by `--keep-fp` words: kinds, stages, module paths or exact node names."""
    kinds = node_kinds(model)
    stages = node_groups(model)
    names = {n.name for n in model.graph.node if n.name}
    selected: set[str] = set()
    for raw in tokens:
        token = raw.strip()
        if not token:
            continue
        if token in kinds:
            hit = set(kinds[token])
        elif token in stages:
            hit = set(stages[token])
        elif token in names:
            hit = {token}
        else:
            hit = {
                n.name
                for n in model.graph.node
                if n.name and (m := node_module(n)) is not None and (m == token or m.startswith(token + "."))
            }
        if not hit and token not in kinds:
            raise CalibrationError(
                f"--keep-fp '{token}' matches no node of the model",
                f"use a kind ({', '.join(KINDS)}), a stage ({', '.join(stages)}), a module path like "
                "'layer3.2.dual' or an exact ONNX node name",
            )
        selected |= hit
    return sorted(selected)


# --------------------------------------------------------------------------------------------------
# evaluation and the greedy search


def compare(
    ref: dict[str, Any],
    probs: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    ref_probs: np.ndarray,
    point: OperatingPoint | None = None,
    views: int = 1,
) -> dict[str, Any]:
    """Metrics of one candidate and its deltas against the FP32 reference (ACC drop in points).

    Rows are image-major with `views` orientations per image; `mel_referrals_changed` counts
    melanoma images (as captured, view 0) whose referral differs from FP32's.

    The measuring is `dsedge.comparator.compare` against `ref_probs` with the stored
    reference metrics `ref`; this names its numbers the way reports and `budget.judge` read
    them. Deltas are candidate minus FP32 (`*_delta`), except the historical
    `acc_drop_points` / `auc_drop` (FP32 minus candidate).
    """
    c = compare_outputs(ref_probs, probs, labels=labels, classes=classes, reference_metrics=ref)
    m = c.metrics or {}
    auc_ref, auc = ref.get("mean_auc"), m.get("mean_auc")
    return {
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
        "mean_auc": auc,
        "mel_auc": m.get("mel_auc"),
        "sk_auc": m.get("sk_auc"),
        "mel_recall": mel_recall(probs, labels, classes, point),
        "mel_referrals_changed": mel_referrals_changed(probs, ref_probs, labels, classes, point, views),
        "top1_agreement": c.top1_agreement,
        "max_abs_prob_diff": c.max_abs_prob_diff,
        "acc_drop_points": 100.0 * (ref["accuracy"] - m["accuracy"]),
        "auc_drop": delta(auc_ref, auc),
        "mel_auc_delta": c.deltas["mel_auc"],
        "sk_auc_delta": c.deltas["sk_auc"],
        "mean_auc_delta": c.deltas["mean_auc"],
    }


@dataclass
class SensitivityReport:
    """Everything measured: FP32 reference, one row per group, each step of the selection, the result."""

    budget: Budget
    n_images: int
    reference: dict[str, Any]
    initial: dict[str, Any]
    groups: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    terms: list[dict[str, Any]] = field(default_factory=list)
    met_budget: bool = False
    #: why the search stopped short of the budget (e.g. the INT8 MAC floor), None when it did not
    blocked_by: str | None = None
    #: "greedy" (keep the most harmful groups float) or "grow" (add INT8 where it costs least per MAC)
    search: str = "greedy"
    #: the grow search's steps: unit, MACs, agreement, failed terms, kept or rejected
    trace: list[dict[str, Any]] = field(default_factory=list)
    #: the grow search stopped once the INT8 MAC floor was out of reach (the result would be refused)
    stopped_at_floor: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget.to_dict(),
            "n_images": self.n_images,
            "reference_fp32": self.reference,
            "int8_all_groups": self.initial,
            "groups": self.groups,
            "steps": self.steps,
            "kept_float_groups": self.kept_float,
            "final": self.final,
            "budget_terms": self.terms,
            "met_budget": self.met_budget,
            "blocked_by": self.blocked_by,
            "search": self.search,
            "trace": self.trace,
        }


def _fmt(v: Any, pct: bool = False, signed: bool = False) -> str:
    if v is None:
        return "–"
    if pct:
        return f"{100 * v:.2f}"
    return (f"{v:+.4f}" if signed else f"{v:.4f}") if isinstance(v, float) else str(v)


def _terms_markdown(terms: list[dict[str, Any]]) -> list[str]:
    lines = ["| budget term | value | limit | result |", "|---|---:|---:|---|"]
    for t in terms:
        limit = "–" if t["limit"] is None else f"{t['rule']} {t['limit']:g}"
        state = "not judged" if not t["judged"] else ("ok" if t["ok"] else "**failed**")
        lines.append(f"| {t['term']} | {_fmt(t['value'])} | {limit} | {state} |")
    return lines


def to_markdown(report: SensitivityReport) -> str:
    """The report as a Markdown page (saved next to the INT8 model)."""
    ref = report.reference
    lines = [
        "# INT8 sensitivity report",
        "",
        f"Validation inputs (images x orientations): {report.n_images}. Result: {'**met**' if report.met_budget else '**NOT met**'}.",
        "",
        *_terms_markdown(report.terms),
        "",
        "Every row is judged against every term; `failed terms` names those it misses "
        f"({_limits(report.budget)}).",
        "",
        "| model | ACC % | ACC drop (pts) | mean AUC | MEL AUC delta | SK AUC delta | top-1 agreement % "
        "| MEL images re-referred | INT8 MACs % | failed terms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| FP32 reference | {_fmt(ref['accuracy'], True)} | – | {_fmt(ref.get('mean_auc'))} | – | – | 100.00 | – | 0.00 | – |",
    ]

    def row(label: str, r: dict[str, Any]) -> str:
        failed = ", ".join(failed_terms(judge(r, ref, report.budget))) or "none"
        if r.get("stopped_early"):
            failed += f" (stopped after {r.get('evaluated')} inputs)"
        drop = "–" if r.get("acc_drop_points") is None else f"{r['acc_drop_points']:+.2f}"
        return (
            f"| {label} | {_fmt(r.get('accuracy'), True)} | {drop} | {_fmt(r.get('mean_auc'))} "
            f"| {_fmt(r.get('mel_auc_delta'), signed=True)} "
            f"| {_fmt(r.get('sk_auc_delta'), signed=True)} | {_fmt(r['top1_agreement'], True)} "
            f"| {_fmt(r.get('mel_referrals_changed'))} | {_fmt(r.get('int8_mac_fraction'), True)} | {failed} |"
        )

    if report.initial:
        lines.append(row("INT8, all groups", report.initial))
    for g in report.groups:
        lines.append(row(f"INT8, only `{g['group']}` ({g['nodes']} nodes)", g))
    if report.trace:
        lines.append(row("**final INT8**", report.final))
        lines += ["", *_trace_markdown(report)]
        return _tail(lines, report)
    for s in report.steps:
        lines.append(row(f"INT8, float: {', '.join(s['kept_float'])}", s))
    if report.final:
        lines.append(row("**final INT8**", report.final))
    return _tail(lines, report)


def _tail(lines: list[str], report: SensitivityReport) -> str:
    lines += ["", f"Groups kept in float: {', '.join(report.kept_float) or 'none'}."]
    if report.blocked_by:
        lines.append(f"The search stopped: {report.blocked_by}.")
    return "\n".join(lines) + "\n"


def _trace_markdown(report: SensitivityReport) -> list[str]:
    """The grow search step by step: units in the order tried, each kept only if the budget held."""
    lines = ["## Grow search trace", "",
             "Units are tried in order of budget usage per MAC saved (measured alone in INT8); each step "
             "quantizes the kept units plus the new one.", "",
             "| step | unit | MACs % | INT8 MACs % after | top-1 agreement % | MEL images re-referred "
             "| failed terms | verdict |", "|---:|---|---:|---:|---:|---:|---|---|"]
    for t in report.trace:
        verdict = "kept" if t["kept"] else "rejected"
        if t["note"]:
            verdict += f" ({t['note']})"
        failed = ", ".join(t["failed_terms"]) or "none"
        if t["stopped_early"]:
            failed += " (stopped early)"
        lines.append(f"| {t['step']} | `{t['group']}` | {100 * t['mac_share']:.2f} | {_fmt(t['int8_mac_fraction'], True)} "
                     f"| {_fmt(t['top1_agreement'], True)} | {_fmt(t['mel_referrals_changed'])} | {failed} | {verdict} |")
    return lines


def _limits(budget: Budget) -> str:
    parts = [f"{k} {v:g}" for k, v in budget.to_dict().items() if isinstance(v, (int, float))
             and not isinstance(v, bool)]
    return "limits: " + ", ".join(parts) if parts else "no limits"


def save_report(report: SensitivityReport, root: Path, stem: str = "int8_sensitivity") -> tuple[Path, Path]:
    """Write `<stem>.json` and `<stem>.md` atomically into `root`."""
    jpath, mpath = root / f"{stem}.json", root / f"{stem}.md"
    atomic_write_json(jpath, report.to_dict())
    atomic_write_text(mpath, to_markdown(report))
    return jpath, mpath


#: How much each failed term counts against a group, in the order they are compared.
_HARM = {
    "top1_agreement": lambda r: 1.0 - r["top1_agreement"],
    "abs_delta_mel_auc": lambda r: abs(r.get("mel_auc_delta") or 0.0),
    "abs_delta_acc_points": lambda r: abs(r["acc_drop_points"]),
    "acc_drop_points": lambda r: r["acc_drop_points"],
    "abs_delta_mean_auc": lambda r: abs(r.get("mean_auc_delta") or r.get("auc_drop") or 0.0),
    "delta_mel_recall": lambda r: -(r.get("mel_recall") or 0.0),
}


def harm_key(row: dict[str, Any], failed: Sequence[str]) -> tuple[float, ...]:
    """Sort key, larger = more harmful: the terms the full model failed first, then the rest."""
    order = [t for t in failed if t in _HARM] + [t for t in ("acc_drop_points", "top1_agreement",
                                                             "abs_delta_mean_auc") if t not in failed]
    return tuple(_HARM[t](row) for t in order)


def select_float_groups(
    groups: dict[str, list[str]],
    base_exclude: Sequence[str],
    build: Callable[[list[str] | None, list[str]], Path],
    evaluate: Callable[[Path], dict[str, Any]],
    reference: dict[str, Any],
    budget: Budget,
    n_images: int,
    analyse: bool | str = True,
    on_step: Callable[[str], None] | None = None,
    min_int8_fraction: float | None = None,
) -> tuple[Path, list[str], SensitivityReport]:
    """Quantize everything; only if that misses `budget`, measure each group alone and keep the most
    harmful groups float, one by one, until every budget term holds.

    `build(nodes_to_quantize, nodes_to_exclude)` writes a quantized candidate
    and returns its path; `evaluate(path)` returns `compare(...)`'s dict.
    Returns (chosen model path, excluded node names, report). With
    `analyse=False` only the full model is measured; `analyse="always"` also
    measures every group when the budget is already met (benchmarks). With
    `min_int8_fraction`, the search stops (budget not met, `report.blocked_by` says why)
    as soon as keeping one more group float would leave fewer INT8 MACs than that
    (`evaluate`'s row carries `int8_mac_fraction`). Raises nothing on a missed budget: the
    caller decides.
    """
    say = on_step or (lambda _msg: None)
    exclude = list(base_exclude)
    say("quantizing all groups")
    best = build(None, exclude)
    initial = evaluate(best)
    report = SensitivityReport(budget, n_images, reference, initial, final=initial)
    report.terms = judge(initial, reference, budget)
    report.met_budget = met(report.terms)
    if not analyse or (report.met_budget and analyse != "always"):
        return best, exclude, report
    for name, nodes in groups.items():
        nodes_q = [n for n in nodes if n not in set(exclude)]
        if not nodes_q:
            continue
        say(f"sensitivity: only {name} in INT8")
        row = evaluate(build(nodes_q, exclude))
        report.groups.append({"group": name, "nodes": len(nodes_q), **row})
    if report.met_budget:
        return best, exclude, report
    failed = failed_terms(report.terms)
    for g in sorted(report.groups, key=lambda r: harm_key(r, failed), reverse=True):
        report.kept_float.append(g["group"])
        previous, exclude = exclude, sorted(set(exclude) | set(groups[g["group"]]))
        remaining = [n for names in groups.values() for n in names if n not in set(exclude)]
        if not remaining:
            break
        say(f"keeping float: {', '.join(report.kept_float)}")
        candidate = build(None, exclude)
        row = evaluate(candidate)
        report.steps.append({"kept_float": list(report.kept_float), **row})
        frac = row.get("int8_mac_fraction")
        if min_int8_fraction is not None and frac is not None and frac < min_int8_fraction:
            report.blocked_by = (f"keeping {', '.join(report.kept_float)} float leaves {100 * frac:.1f} % of the "
                                 f"MACs in INT8, below the floor of {100 * min_int8_fraction:.0f} %")
            report.kept_float.pop()
            exclude = previous
            break
        best = candidate
        report.final = row
        report.terms = judge(row, reference, budget)
        if met(report.terms):
            report.met_budget = True
            break
    return best, exclude, report


# --------------------------------------------------------------------------------------------------
# the grow search: INT8 added to the float model where it is cheapest per MAC saved

#: Units that save less than this share of the MACs stay float in the grow search (the head:
#: avgpool + fc, and a CAM conv): quantizing them buys no speed and can only cost decisions.
MIN_UNIT_MAC_SHARE = 0.001
SEARCHES = ("grow", "greedy")


def node_block(node: onnx.NodeProto) -> str:
    """The grow search's unit: 'stem', a bottleneck block 'layer3.2', 'head', or the stage otherwise."""
    module = node_module(node)
    stage = node_stage(node)
    if module and stage.startswith("layer"):
        parts = module.split(".")
        if len(parts) >= 2 and parts[1].isdigit():
            return f"{parts[0]}.{parts[1]}"
    return stage


def block_groups(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Disjoint units in graph order, one per bottleneck block (plus stem, head, others).

    Stages are too coarse for the grow search: a stage of six blocks is ~26 % of the MACs,
    so one harmful block would keep five harmless ones float with it.
    """
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.name and node.op_type not in ("Constant", "Shape"):
            groups.setdefault(node_block(node), []).append(node.name)
    return groups


def block_parts(model: onnx.ModelProto) -> dict[str, dict[str, list[str]]]:
    """For each bottleneck block, its nodes split by sub-module: the grow search's finer units.

    `layer1.0.bn1` is conv1 (the exporter folds BatchNorm into the conv and names it after the
    BatchNorm), `layer1.0.dual` the dilated depthwise cascade, `layer1.0.downsample` the shortcut
    conv; nodes of the block itself (the residual Add) form `<block>.residual`. A block that
    cannot be INT8 as a whole often can be in part: one harmful conv keeps the rest float with it.
    """
    parts: dict[str, dict[str, list[str]]] = {}
    for node in model.graph.node:
        if not node.name or node.op_type in ("Constant", "Shape"):
            continue
        block, module = node_block(node), node_module(node) or ""
        if not block.startswith("layer") or "." not in block:
            continue
        pieces = module.split(".")
        part = ".".join(pieces[:3]) if len(pieces) >= 3 else f"{block}.residual"
        parts.setdefault(block, {}).setdefault(part, []).append(node.name)
    return parts


def budget_usage(row: dict[str, Any], reference: dict[str, Any], budget: Budget) -> float:
    """How much of the budget one candidate uses: the sum over judged terms of value / limit.

    A scalar harm that every term contributes to on the same scale (1.0 = one term at its limit);
    with no judged term, the disagreement. Agreement counts as (1 - agreement) / (1 - limit).
    """
    total, judged = 0.0, False
    for t in judge(row, reference, budget):
        if not t["judged"]:
            continue
        judged = True
        if t["term"] == "top1_agreement":
            room = 1.0 - t["limit"]
            total += (1.0 - t["value"]) / room if room > 0 else (0.0 if t["value"] >= 1.0 else float("inf"))
        elif t["term"] == "mel_referrals_changed":
            total += t["value"] / (t["limit"] + 1)  # a tolerance of 1 image: 1 change uses half
        elif t["limit"] > 0:
            total += abs(t["value"]) / t["limit"]
        elif t["value"]:
            total += float("inf")
    if not judged:
        return 1.0 - float(row.get("top1_agreement") or 0.0)
    return total


def _step_row(step: int, group: str, unit_macs: int, total_macs: int, row: dict[str, Any],
              terms: list[dict[str, Any]], kept: bool, note: str = "") -> dict[str, Any]:
    """One line of the grow trace: what was added, what it measured, what failed, and the verdict."""
    return {"step": step, "group": group, "macs": unit_macs, "mac_share": unit_macs / total_macs if total_macs else 0.0,
            "int8_mac_fraction": row.get("int8_mac_fraction"), "top1_agreement": row.get("top1_agreement"),
            "mel_auc_delta": row.get("mel_auc_delta"), "acc_drop_points": row.get("acc_drop_points"),
            "mel_referrals_changed": row.get("mel_referrals_changed"), "stopped_early": bool(row.get("stopped_early")),
            "failed_terms": failed_terms(terms), "kept": kept, "note": note}


def _agreement_text(row: dict[str, Any]) -> str:
    """'agreement 99.50 %' (or 'stopped early, <= 98.00 %'), for the progress lines."""
    a = row.get("top1_agreement")
    text = "agreement n/a" if a is None else f"agreement {100 * a:.2f} %"
    return text.replace("agreement ", "stopped early, agreement <= ") if row.get("stopped_early") else text


def _max_flips(budget: Budget, n_images: int) -> int | None:
    """Disagreements beyond which a candidate certainly misses the agreement term (None: not judged)."""
    if budget.min_agreement is None:
        return None
    return int(np.floor((1.0 - budget.min_agreement) * n_images + 1e-9))


def grow_int8_groups(
    groups: dict[str, list[str]],
    base_exclude: Sequence[str],
    build: Callable[[list[str] | None, list[str]], Path],
    evaluate: Callable[..., dict[str, Any]],
    reference: dict[str, Any],
    budget: Budget,
    n_images: int,
    macs: dict[str, int],
    on_step: Callable[[str], None] | None = None,
    min_int8_fraction: float | None = None,
    accept: Budget | None = None,
    parts: dict[str, dict[str, list[str]]] | None = None,
) -> tuple[Path | None, list[str], SensitivityReport]:
    """Forward selection: start from the float model and add INT8 units where they cost least per MAC.

    Why not the greedy search: keeping float the groups most harmful *alone* is not monotone
    (harms do not add), and at a strict budget it ends with nearly everything float. Here every
    unit is measured alone in INT8 (everything else float, `--keep-fp` nodes never quantized),
    units are ordered by budget usage per MAC saved (least first, larger units first on ties),
    then added one by one; an addition stays only if the candidate still meets `accept`
    (default `budget`). A unit that misses it alone is rejected without another run; units
    saving < `MIN_UNIT_MAC_SHARE` of the MACs stay float. `evaluate(path, max_flips=k)` may stop
    early once more than k inputs disagree (the agreement term is then certainly missed).

    `parts` ({unit: {part: nodes}}, e.g. `block_parts`) refines the units the first pass left
    float: their parts are tried one by one, largest MACs first (no single runs: one candidate
    per part), and kept when the budget still holds. Parts saving < `MIN_UNIT_MAC_SHARE` stay float.

    Returns (path of the chosen model or None when nothing could be quantized, excluded node
    names, report with `trace`). `report.met_budget` is False (and `blocked_by` says why) when the
    grown model has fewer than `min_int8_fraction` of its MACs in INT8. The search stops (and says
    so in `stopped_at_floor`) as soon as the MACs already settled float put the floor out of reach:
    every further candidate would be measured for a model that is refused anyway.
    """
    say = on_step or (lambda _msg: None)
    accept = accept or budget
    base = set(base_exclude)
    units = {g: [n for n in names if n not in base] for g, names in groups.items()}
    total = sum(macs.values()) or 1
    unit_macs = {g: sum(macs.get(n, 0) for n in names) for g, names in units.items()}
    report = SensitivityReport(budget, n_images, reference, initial={}, search="grow")
    flips = _max_flips(accept, n_images)
    cache: dict[frozenset[str], tuple[Path, dict[str, Any]]] = {}

    def measure(chosen: list[str]) -> tuple[Path, dict[str, Any]]:
        key = frozenset(chosen)
        if key not in cache:  # a unit's single run is also the first step's candidate: measured once
            path = build([n for g in chosen for n in units[g]], sorted(base))
            cache[key] = (path, evaluate(path, max_flips=flips))
        return cache[key]

    small = [g for g in units if units[g] and unit_macs[g] < MIN_UNIT_MAC_SHARE * total]
    tried = [g for g in units if units[g] and g not in small]
    # MACs that will stay float whatever comes next: the floor check stops a search that can no
    # longer reach `min_int8_fraction`, instead of measuring candidates for a model it will refuse
    settled_float = set(base) | {n for g in small for n in units[g]}

    def below_floor() -> float | None:
        reachable = 1.0 - sum(macs.get(n, 0) for n in settled_float) / total
        return reachable if min_int8_fraction is not None and reachable < min_int8_fraction else None

    def pieces_of(g: str) -> dict[str, list[str]]:
        """The parts of unit `g` that still have nodes to quantize (`--keep-fp` nodes removed)."""
        pieces = {p: [n for n in names if n not in base] for p, names in (parts or {}).get(g, {}).items()}
        return {p: names for p, names in pieces.items() if names}

    def refinable(g: str) -> bool:
        return len(pieces_of(g)) >= 2
    for i, g in enumerate(tried, 1):
        say(f"grow search: measuring {g} alone in INT8 ({i}/{len(tried)})")
        _path, row = measure([g])
        usage = budget_usage(row, reference, accept)
        say(f"grow search: {g} alone: {_agreement_text(row)}")
        report.groups.append({"group": g, "nodes": len(units[g]), "macs": unit_macs[g],
                              "mac_share": unit_macs[g] / total, "budget_usage": usage,
                              "usage_per_gmac": usage / max(unit_macs[g], 1) * 1e9, **row})
        if not met(judge(row, reference, accept)) and not refinable(g):
            settled_float.update(units[g])
        if below_floor() is not None:
            break
    order = [] if below_floor() is not None else sorted(report.groups, key=lambda r: (r["usage_per_gmac"], -r["macs"]))
    chosen: list[str] = []
    best: Path | None = None

    def try_add(unit: str, step: int, note: str = "") -> None:
        """Measure what is kept plus `unit`; keep `unit` when the budget still holds."""
        nonlocal best
        path, row = measure([*chosen, unit])
        terms = judge(row, reference, accept)
        ok = met(terms)
        say(f"grow search: + {unit}: {_agreement_text(row)}, {'kept' if ok else 'rejected'}")
        report.trace.append(_step_row(step, unit, unit_macs[unit], total, row, terms, ok, note))
        if ok:
            chosen.append(unit)
            best, report.final = path, row

    for step, single in enumerate(order, 1):
        g = single["group"]
        if not met(judge(single, reference, accept)):
            report.trace.append(_step_row(step, g, unit_macs[g], total, single, judge(single, reference, accept),
                                          False, "misses the budget alone"))
        else:
            say(f"grow search: adding {g} ({step}/{len(order)})")
            try_add(g, step)
        if g not in chosen and not refinable(g):
            settled_float.update(units[g])
        if below_floor() is not None:
            break
    top_level = [g for g in units if units[g]]
    refined: list[str] = []
    for g in [t["group"] for t in report.trace if not t["kept"]] if parts and below_floor() is None else []:
        pieces = pieces_of(g)
        if not refinable(g):
            continue
        refined.append(g)
        for part in sorted(pieces, key=lambda p: -sum(macs.get(n, 0) for n in pieces[p])):
            units[part] = pieces[part]
            unit_macs[part] = sum(macs.get(n, 0) for n in pieces[part])
            step = len(report.trace) + 1
            if unit_macs[part] < MIN_UNIT_MAC_SHARE * total:
                report.trace.append(_step_row(step, part, unit_macs[part], total, {}, [], False,
                                              f"part of {g}; kept float: saves < {100 * MIN_UNIT_MAC_SHARE:g} % "
                                              "of the MACs"))
            else:
                say(f"grow search: adding {part}, part of {g} ({step})")
                try_add(part, step, f"part of {g}")
            if part not in chosen:
                settled_float.update(units[part])
            if below_floor() is not None:
                break
        if below_floor() is not None:
            break
    for g in small:
        report.trace.append(_step_row(len(report.trace) + 1, g, unit_macs[g], total, {}, [], False,
                                      f"kept float: saves < {100 * MIN_UNIT_MAC_SHARE:g} % of the MACs"))
    quantized = {n for c in chosen for n in units[c]}
    report.kept_float = [g for g in top_level if g not in chosen and g not in refined] + [  # parts that cost MACs
        p for g in refined for p in (parts or {}).get(g, {})
        if p in units and p not in chosen and unit_macs[p] >= MIN_UNIT_MAC_SHARE * total]
    exclude = sorted(base | {n for g in top_level for n in units[g] if n not in quantized})
    reachable = below_floor()
    if reachable is not None:
        report.final = report.final or {"int8_mac_fraction": 0.0, "top1_agreement": 1.0}
        report.terms = judge(report.final, reference, budget)
        report.stopped_at_floor = True
        report.blocked_by = (f"search stopped: at most {100 * reachable:.1f} % of the MACs could still be INT8 "
                             f"within the budget, below the floor of {100 * min_int8_fraction:.0f} % "
                             "(--allow-mostly-float searches on and writes the best candidate)")
        return best, exclude, report
    if best is None:
        report.final = {"int8_mac_fraction": 0.0, "top1_agreement": 1.0}
        report.blocked_by = "no unit could be quantized within the budget"
        report.terms = judge(report.final, reference, budget)
        return None, exclude, report
    report.terms = judge(report.final, reference, budget)
    report.met_budget = met(report.terms)
    frac = report.final.get("int8_mac_fraction")
    if min_int8_fraction is not None and frac is not None and frac < min_int8_fraction:
        report.met_budget = False
        report.blocked_by = (f"the grown model has {100 * frac:.1f} % of its MACs in INT8, below the floor of "
                             f"{100 * min_int8_fraction:.0f} %")
    return best, exclude, report
