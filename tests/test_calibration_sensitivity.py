"""Layer groups, --keep-fp selectors and the greedy keep-float search of the sensitivity analysis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as oh

from dsedge.calibration.budget import Budget, OperatingPoint
from dsedge.calibration.sensitivity import (
    compare,
    node_groups,
    node_kinds,
    node_module,
    node_stage,
    resolve_keep_fp,
    save_report,
    select_float_groups,
    to_markdown,
)
from dsedge.errors import CalibrationError


def _node(op: str, name: str, scopes: list[str] | None = None, module: str | None = None, **attrs: Any):
    n = oh.make_node(op, [f"{name}_in", f"{name}_w"] if op == "Conv" else [f"{name}_in"], [f"{name}_out"],
                     name=name, **attrs)
    if scopes is not None:
        p = n.metadata_props.add()
        p.key, p.value = "pkg.torch.onnx.name_scopes", repr(scopes)
    if module is not None:
        p = n.metadata_props.add()
        p.key, p.value = "dsedge.module", module
    return n


def exported_like_model() -> onnx.ModelProto:
    """Nodes carrying the metadata the dynamo exporter and our SimAM outlining leave behind."""
    nodes = [
        _node("Conv", "node_Conv_1", ["", "bn1", "_native_batch_norm"]),
        _node("Relu", "node_relu", ["", "relu", "relu"]),
        _node("SimAM", "/layer1.0.simam1/SimAM", ["layer1", "0", "simam1"], module="layer1.0.simam1"),
        _node("Conv", "node_Conv_2", ["", "layer1", "layer1.0", "layer1.0.dual", "layer1.0.dual.bn_d1", "bn"],
              group=8),
        _node("Conv", "node_Conv_3", ["", "layer1", "layer1.0", "layer1.0.bn3", "bn"]),
        _node("Add", "node_add", ["", "layer1", "layer1.0", "add"]),
        _node("Conv", "node_Conv_4", ["", "layer2", "layer2.0", "layer2.0.bn1", "bn"]),
        _node("Gemm", "node_linear", ["", "fc", "linear"]),
        _node("Relu", "plain_layer3_relu"),  # no metadata: falls back to the node name
    ]
    inits = [
        oh.make_tensor("node_Conv_1_w", TensorProto.FLOAT, [8, 3, 3, 3], np.zeros(216, np.float32)),
        oh.make_tensor("node_Conv_2_w", TensorProto.FLOAT, [8, 1, 3, 3], np.zeros(72, np.float32)),
        oh.make_tensor("node_Conv_3_w", TensorProto.FLOAT, [16, 8, 1, 1], np.zeros(128, np.float32)),
        oh.make_tensor("node_Conv_4_w", TensorProto.FLOAT, [16, 16, 3, 3], np.zeros(2304, np.float32)),
    ]
    graph = oh.make_graph(nodes, "g", [], [], inits)
    return oh.make_model(graph)


def test_module_and_stage_from_metadata() -> None:
    m = exported_like_model()
    by_name = {n.name: n for n in m.graph.node}
    assert node_module(by_name["node_Conv_2"]) == "layer1.0.dual.bn_d1"
    assert node_module(by_name["/layer1.0.simam1/SimAM"]) == "layer1.0.simam1"  # dsedge.module wins
    assert node_stage(by_name["node_Conv_1"]) == "stem"
    assert node_stage(by_name["node_linear"]) == "head"
    assert node_stage(by_name["/layer1.0.simam1/SimAM"]) == "layer1"
    assert node_stage(by_name["plain_layer3_relu"]) == "layer3"


def test_groups_and_kinds() -> None:
    m = exported_like_model()
    groups = node_groups(m)
    assert list(groups) == ["stem", "layer1", "layer2", "head", "layer3", "depthwise"]
    assert groups["depthwise"] == ["node_Conv_2"]
    kinds = node_kinds(m)
    assert kinds["simam"] == ["/layer1.0.simam1/SimAM"]
    assert kinds["add"] == ["node_add"] and kinds["gemm"] == ["node_linear"]
    assert set(kinds["conv"]) == {"node_Conv_1", "node_Conv_2", "node_Conv_3", "node_Conv_4"}


def test_keep_fp_selectors() -> None:
    m = exported_like_model()
    assert resolve_keep_fp(m, ["depthwise"]) == ["node_Conv_2"]
    assert resolve_keep_fp(m, ["layer2", "node_linear"]) == ["node_Conv_4", "node_linear"]
    assert resolve_keep_fp(m, ["layer1.0.dual"]) == ["node_Conv_2"]  # module path prefix
    assert resolve_keep_fp(m, ["simam", " "]) == ["/layer1.0.simam1/SimAM"]
    with pytest.raises(CalibrationError, match="'layer9' matches no node"):
        resolve_keep_fp(m, ["layer9"])


def _fake_pipeline(harm: dict[str, float]) -> tuple[dict[str, list[str]], Any, Any, list]:
    """Groups g1..g3 of two nodes each; quantizing a node costs harm[group] ACC points."""
    groups = {g: [f"{g}_a", f"{g}_b"] for g in harm}
    owner = {n: g for g, names in groups.items() for n in names}
    built: dict[str, tuple[list[str] | None, list[str]]] = {}
    calls: list = []

    def build(nodes_q: list[str] | None, exclude: list[str]) -> Path:
        p = Path(f"cand{len(built)}")
        built[str(p)] = (nodes_q, exclude)
        calls.append((nodes_q, list(exclude)))
        return p

    def evaluate(path: Path) -> dict[str, Any]:
        nodes_q, exclude = built[str(path)]
        quantized = [n for n in (nodes_q or list(owner)) if n not in exclude]
        drop = sum(harm[owner[n]] / 2 for n in quantized)
        return {"accuracy": 0.9 - drop / 100, "mean_auc": 0.8, "top1_agreement": 1 - drop / 100,
                "acc_drop_points": drop, "auc_drop": 0.0}

    return groups, build, evaluate, calls


def test_most_harmful_group_is_kept_float_until_budget_holds(tmp_path: Path) -> None:
    groups, build, evaluate, calls = _fake_pipeline({"g1": 0.1, "g2": 2.0, "g3": 0.3})
    ref = {"accuracy": 0.9, "mean_auc": 0.8}
    chosen, excluded, report = select_float_groups(groups, [], build, evaluate, ref, Budget.legacy(0.5, None), 100)
    assert report.initial["acc_drop_points"] == pytest.approx(2.4)
    assert [g["group"] for g in report.groups] == ["g1", "g2", "g3"]
    assert report.kept_float == ["g2"] and report.met_budget
    assert excluded == ["g2_a", "g2_b"]
    assert report.final["acc_drop_points"] == pytest.approx(0.4)
    assert calls[-1] == (None, ["g2_a", "g2_b"])  # the chosen model quantizes everything else
    jpath, mpath = save_report(report, tmp_path)
    data = json.loads(jpath.read_text())
    assert data["kept_float_groups"] == ["g2"] and data["met_budget"] is True
    md = mpath.read_text()
    assert "only `g2`" in md and "**met**" in md


def test_user_exclusions_are_respected_and_unreachable_budget_reported() -> None:
    groups, build, evaluate, _ = _fake_pipeline({"g1": 1.0, "g2": 2.0})
    ref = {"accuracy": 0.9, "mean_auc": 0.8}
    _, excluded, report = select_float_groups(groups, ["g1_a"], build, evaluate, ref, Budget.legacy(0.0, None), 100)
    assert "g1_a" in excluded
    assert report.groups[0]["nodes"] == 1  # g1_a was already float
    assert not report.met_budget  # even one quantized node costs more than 0 points


def test_agreement_floor_also_drives_the_search() -> None:
    groups, build, evaluate, _ = _fake_pipeline({"g1": 0.2, "g2": 0.1})  # ACC budget met from the start
    ref = {"accuracy": 0.9, "mean_auc": 0.8}
    _, _, plain = select_float_groups(groups, [], build, evaluate, ref, Budget.legacy(0.5, None), 100)
    assert plain.met_budget and plain.kept_float == []
    _, excluded, strict = select_float_groups(groups, [], build, evaluate, ref, Budget.legacy(0.5, 0.9985), 100)
    assert strict.met_budget and strict.kept_float == ["g1"] and excluded == ["g1_a", "g1_b"]
    assert strict.final["top1_agreement"] >= 0.9985


def _recording_build(effect: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, list[str]], Any]:
    """One group per name; `build` records which groups each fake model quantizes (by its path)."""
    groups = {g: [g] for g in effect}
    built: dict[str, list[str]] = {}

    def build(nodes_q: list[str] | None, exclude: list[str]) -> Path:
        p = Path(f"c{len(built)}")
        built[str(p)] = [n for n in (nodes_q or list(groups)) if n not in exclude]
        return p

    return groups, built, build


def test_agreement_budget_keeps_the_least_agreeing_group_first() -> None:
    """g1 costs ACC points but keeps agreement; g2 gains ACC by luck yet flips 10 % of predictions."""
    effect = {"g1": (0.4, 0.0), "g2": (-1.0, 0.10)}  # (acc drop points, disagreement) per group
    groups, built, build = _recording_build(effect)

    def evaluate(path: Path) -> dict[str, Any]:
        q = built[str(path)]
        drop = sum(effect[g][0] for g in q)
        return {"accuracy": 0.9, "mean_auc": 0.8, "acc_drop_points": drop, "auc_drop": 0.0,
                "top1_agreement": 1.0 - sum(effect[g][1] for g in q)}

    _, excluded, report = select_float_groups(groups, [], build, evaluate, {"accuracy": 0.9},
                                              Budget.legacy(0.5, 0.95), 100)
    assert report.kept_float == ["g2"] and excluded == ["g2"] and report.met_budget


def test_without_analysis_only_the_full_model_is_measured() -> None:
    groups, build, evaluate, calls = _fake_pipeline({"g1": 1.0, "g2": 2.0})
    _, _, report = select_float_groups(groups, [], build, evaluate, {"accuracy": 0.9}, Budget.legacy(0.5, None), 10,
                                      analyse=False)
    assert len(calls) == 1 and report.groups == [] and not report.met_budget


def test_compare_deltas() -> None:
    labels = np.array([0, 1, 2, 1])
    ref_probs = np.eye(3)[[0, 1, 2, 1]] * 0.9 + 0.05
    probs = np.eye(3)[[0, 1, 2, 0]] * 0.9 + 0.05
    ref = {"accuracy": 1.0, "mean_auc": 1.0}
    row = compare(ref, probs, labels, ["MEL", "NV", "SK"], ref_probs)
    assert row["acc_drop_points"] == pytest.approx(25.0)
    assert row["top1_agreement"] == pytest.approx(0.75)
    assert row["auc_drop"] is not None and row["auc_drop"] >= 0


def test_search_runs_only_when_the_full_model_misses_the_budget() -> None:
    groups, build, evaluate, calls = _fake_pipeline({"g1": 0.1, "g2": 0.2})  # 0.3 points, agreement 99.7 %
    ref = {"accuracy": 0.9, "mean_auc": 0.8}
    _, _, report = select_float_groups(groups, [], build, evaluate, ref, Budget(), 100)
    assert report.met_budget and len(calls) == 1 and report.groups == []
    assert {t["term"] for t in report.terms if t["judged"]} == {"top1_agreement", "abs_delta_acc_points"}


def test_a_melanoma_auc_failure_keeps_the_group_that_moves_mel_auc_float() -> None:
    """g1 flips nothing but shifts melanoma AUC by 0.02; g2 costs a little agreement within budget."""
    effect = {"g1": (0.02, 0.0), "g2": (0.0, 0.004)}  # (MEL AUC delta, disagreement)
    groups, built, build = _recording_build(effect)

    def evaluate(path: Path) -> dict[str, Any]:
        q = built[str(path)]
        d_mel = -sum(effect[g][0] for g in q)
        return {"accuracy": 0.9, "mean_auc": 0.8 + d_mel / 2, "mel_auc": 0.7 + d_mel, "acc_drop_points": 0.0,
                "mel_auc_delta": d_mel, "mean_auc_delta": d_mel / 2, "auc_drop": -d_mel / 2,
                "top1_agreement": 1.0 - sum(effect[g][1] for g in q)}

    ref = {"accuracy": 0.9, "mean_auc": 0.8, "mel_auc": 0.7}
    _, excluded, report = select_float_groups(groups, [], build, evaluate, ref, Budget(), 100)
    assert report.kept_float == ["g1"] and excluded == ["g1"] and report.met_budget
    md = to_markdown(report)
    assert "abs_delta_mel_auc" in md and "MEL AUC delta" in md


def test_compare_reports_mel_recall_and_signed_deltas() -> None:
    labels = np.array([0, 0, 1, 2])
    ref_probs = np.array([[0.6, 0.3, 0.1], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    from dsedge.metrics import classification_metrics

    ref = classification_metrics(labels, ref_probs, ["MEL", "NV", "SK"])
    row = compare(ref, probs, labels, ["MEL", "NV", "SK"], ref_probs, OperatingPoint(0.3))
    assert row["mel_recall"] == pytest.approx(0.5)  # 0.6 >= 0.3, 0.2 < 0.3
    assert row["mel_auc_delta"] == pytest.approx(row["mel_auc"] - ref["mel_auc"])
    assert row["sk_auc_delta"] == pytest.approx(0.0)
    assert compare(ref, probs, labels, ["MEL", "NV", "SK"], ref_probs)["mel_recall"] is None


def test_always_measures_every_group_even_when_the_budget_holds() -> None:
    groups, build, evaluate, calls = _fake_pipeline({"g1": 0.1, "g2": 0.2})
    _, excluded, report = select_float_groups(groups, [], build, evaluate, {"accuracy": 0.9, "mean_auc": 0.8},
                                              Budget(), 100, analyse="always")
    assert report.met_budget and [g["group"] for g in report.groups] == ["g1", "g2"]
    assert report.kept_float == [] and excluded == [] and len(calls) == 3


# --------------------------------------------------------------------------------------------------
# the grow search


def _grow_pipeline(units: dict[str, tuple[int, float]], interaction: float = 0.0):
    """Units of one node each: (MACs, disagreement when quantized); disagreements add up.

    `interaction` is extra disagreement per pair of quantized units (harms that do not add).
    Records every build and every `evaluate` call's `max_flips`.
    """
    groups = {g: [f"{g}_n"] for g in units}
    owner = {f"{g}_n": g for g in units}
    macs = {f"{g}_n": m for g, (m, _d) in units.items()}
    total = sum(macs.values())
    built: dict[str, list[str]] = {}
    log: dict[str, list] = {"builds": [], "max_flips": []}

    def build(nodes_q: list[str] | None, exclude: list[str]) -> Path:
        q = [owner[n] for n in (nodes_q or list(owner)) if n not in exclude]
        p = Path(f"cand{len(built)}")
        built[str(p)] = q
        log["builds"].append(sorted(q))
        return p

    def evaluate(path: Path, max_flips: int | None = None) -> dict[str, Any]:
        q = built[str(path)]
        log["max_flips"].append(max_flips)
        dis = sum(units[g][1] for g in q) + interaction * len(q) * (len(q) - 1) / 2
        return {"accuracy": 0.9, "mean_auc": 0.8, "acc_drop_points": 0.0, "auc_drop": 0.0,
                "top1_agreement": 1.0 - dis, "int8_mac_fraction": sum(units[g][0] for g in q) / total}

    return groups, macs, build, evaluate, log


def test_grow_adds_int8_where_it_costs_least_per_mac_and_keeps_only_what_holds_the_budget() -> None:
    from dsedge.calibration.sensitivity import grow_int8_groups

    # per GMAC of budget: a 0.5, b 0.1 (big and cheap: first), c 1.0 (fails on top of a + b), d 0 (free)
    units = {"a": (10, 0.002), "b": (50, 0.002), "c": (10, 0.004), "d": (20, 0.0), "head": (0, 0.0)}
    groups, macs, build, evaluate, log = _grow_pipeline({**units, "head": (0, 0.0)})
    macs["head_n"] = 0
    budget = Budget.legacy(None, 0.995)
    chosen, excluded, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9, "mean_auc": 0.8},
                                                budget, 1000, macs)
    assert report.search == "grow" and [r["group"] for r in report.groups] == ["a", "b", "c", "d"]
    tried = [(t["group"], t["kept"]) for t in report.trace]
    assert tried == [("d", True), ("b", True), ("a", True), ("c", False), ("head", False)]
    assert report.trace[-1]["note"].startswith("kept float: saves <")  # the head is never quantized
    assert report.trace[3]["failed_terms"] == ["top1_agreement"]
    assert report.kept_float == ["c", "head"] and excluded == ["c_n", "head_n"]
    assert report.final["top1_agreement"] == pytest.approx(0.996) and report.met_budget
    assert report.final["int8_mac_fraction"] == pytest.approx(80 / 90)
    # four single runs; the first step reuses d's single run; then b+d, a+b+d, a+b+c+d
    assert len(log["builds"]) == 4 + 3 and log["builds"][4] == ["b", "d"]
    assert set(log["max_flips"]) == {5}  # 0.5 % of 1,000 inputs: a 6th disagreement settles a rejection
    assert log["builds"][-1] == ["a", "b", "c", "d"] and chosen == Path("cand5")


def test_grow_rejects_a_unit_that_misses_the_budget_alone_without_another_run() -> None:
    from dsedge.calibration.sensitivity import grow_int8_groups

    groups, macs, build, evaluate, log = _grow_pipeline({"a": (10, 0.001), "bad": (80, 0.05), "b": (10, 0.001)})
    _, excluded, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9}, Budget.legacy(None, 0.99),
                                           100, macs)
    bad = next(t for t in report.trace if t["group"] == "bad")
    assert not bad["kept"] and bad["note"] == "misses the budget alone"
    assert ["bad"] in log["builds"] and ["a", "b", "bad"] not in log["builds"] and len(log["builds"]) == 3 + 1
    assert excluded == ["bad_n"] and report.met_budget


def test_grow_below_the_mac_floor_is_not_met_and_says_why() -> None:
    from dsedge.calibration.sensitivity import grow_int8_groups

    # the floor is reachable until the end; the pairs interact, so the grown model stays below it
    groups, macs, build, evaluate, _ = _grow_pipeline({"a": (30, 0.002), "b": (20, 0.002), "c": (50, 0.002)},
                                                      interaction=0.003)
    _, _, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9}, Budget.legacy(None, 0.995),
                                    1000, macs, min_int8_fraction=0.6)
    assert len(report.trace) == 3 and not report.met_budget and "below the floor of 60 %" in report.blocked_by


def test_grow_stops_once_the_mac_floor_is_out_of_reach() -> None:
    """A big unit that misses the budget alone and has no parts: no candidate can reach the floor."""
    from dsedge.calibration.sensitivity import grow_int8_groups

    groups, macs, build, evaluate, log = _grow_pipeline({"a": (10, 0.001), "bad": (80, 0.05), "b": (10, 0.001)})
    chosen, _, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9}, Budget.legacy(None, 0.99),
                                         100, macs, min_int8_fraction=0.8)
    assert log["builds"] == [["a"], ["bad"]]  # b is never measured, nothing is grown
    assert chosen is None and report.stopped_at_floor and not report.met_budget
    assert "at most 20.0 % of the MACs could still be INT8" in report.blocked_by
    # without a floor (--allow-mostly-float) the same search runs to the end
    groups, macs, build, evaluate, log = _grow_pipeline({"a": (10, 0.001), "bad": (80, 0.05), "b": (10, 0.001)})
    chosen, _, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9}, Budget.legacy(None, 0.99),
                                         100, macs)
    assert chosen is not None and not report.stopped_at_floor and report.final["int8_mac_fraction"] == 0.2


def test_grow_with_harms_that_do_not_add_rejects_the_step_that_breaks_the_budget() -> None:
    """Each unit alone keeps 99.8 %, but every pair costs 0.3 % more: only one unit can be INT8."""
    from dsedge.calibration.sensitivity import grow_int8_groups

    groups, macs, build, evaluate, _ = _grow_pipeline({"a": (30, 0.002), "b": (20, 0.002), "c": (50, 0.002)},
                                                      interaction=0.003)
    _, excluded, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9},
                                           Budget.legacy(None, 0.995), 1000, macs)
    assert [(t["group"], t["kept"]) for t in report.trace] == [("c", True), ("a", False), ("b", False)]
    assert excluded == ["a_n", "b_n"]


def test_grow_respects_keep_fp_and_a_stricter_acceptance_agreement() -> None:
    from dsedge.calibration.sensitivity import grow_int8_groups

    groups, macs, build, evaluate, log = _grow_pipeline({"a": (50, 0.003), "b": (50, 0.001)})
    groups["b"].append("kept_by_user")
    _, excluded, report = grow_int8_groups(groups, ["kept_by_user"], build, evaluate, {"accuracy": 0.9},
                                           Budget.legacy(None, 0.99), 1000, macs, accept=Budget.legacy(None, 0.998))
    assert "kept_by_user" in excluded and all("kept_by_user" not in b for b in log["builds"])
    assert report.kept_float == ["a"] and report.met_budget  # a alone keeps 99.7 %: below the 99.8 % margin
    assert set(log["max_flips"]) == {2}


def test_budget_usage_sums_each_judged_term_against_its_limit() -> None:
    from dsedge.calibration.sensitivity import budget_usage

    ref = {"accuracy": 0.9, "mel_auc": 0.8}
    row = {"accuracy": 0.9, "acc_drop_points": 0.25, "top1_agreement": 0.995, "mel_auc": 0.799,
           "mel_referrals_changed": 1}
    usage = budget_usage(row, ref, Budget())  # 0.5 + 0.2 + 0.5 + 0.5
    assert usage == pytest.approx(0.5 + 0.001 / 0.005 + 0.25 / 0.5 + 0.5)
    assert budget_usage(row, ref, Budget.off()) == pytest.approx(0.005)


def test_block_groups_split_stages_into_bottleneck_blocks() -> None:
    from dsedge.calibration.sensitivity import block_groups

    groups = block_groups(exported_like_model())
    assert list(groups) == ["stem", "layer1.0", "layer2.0", "head", "layer3"]
    assert groups["layer1.0"] == ["/layer1.0.simam1/SimAM", "node_Conv_2", "node_Conv_3", "node_add"]


def test_grow_report_markdown_has_the_trace(tmp_path: Path) -> None:
    from dsedge.calibration.sensitivity import grow_int8_groups

    groups, macs, build, evaluate, _ = _grow_pipeline({"a": (10, 0.001), "bad": (80, 0.05)})
    _, _, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9, "mean_auc": 0.8},
                                    Budget.legacy(None, 0.99), 100, macs)
    jpath, mpath = save_report(report, tmp_path)
    data = json.loads(jpath.read_text())
    assert data["search"] == "grow" and [t["group"] for t in data["trace"]] == ["a", "bad"]
    md = mpath.read_text()
    assert "## Grow search trace" in md and "| `bad` |" in md and "misses the budget alone" in md


def test_the_grow_search_names_its_steps_in_the_error_line() -> None:
    from dsedge.calibration.int8 import _trace_line
    from dsedge.calibration.sensitivity import grow_int8_groups

    groups, macs, build, evaluate, _ = _grow_pipeline({"a": (10, 0.001), "bad": (80, 0.05), "b": (10, 0.001)})
    _, _, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9}, Budget.legacy(None, 0.99),
                                    100, macs, min_int8_fraction=0.15)
    line = _trace_line(report)
    assert "+a 99.90" in line and "xbad 95.00" in line and "+b 99.80" in line
    # stopped at the floor before any step: the units measured alone are what it tried
    groups, macs, build, evaluate, _ = _grow_pipeline({"a": (10, 0.001), "bad": (80, 0.05), "b": (10, 0.001)})
    _, _, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9}, Budget.legacy(None, 0.99),
                                    100, macs, min_int8_fraction=0.8)
    assert "grow search, units measured alone" in _trace_line(report) and "a 99.90, bad 95.00" in _trace_line(report)
    report.search = "greedy"  # the greedy search measures stages alone too: the line names the search that ran
    assert _trace_line(report).startswith("\ngreedy search, units measured alone")


def test_grow_refines_a_rejected_block_into_its_parts_largest_first() -> None:
    """A block whose one conv is harmful: the block is rejected, its harmless big conv is then kept."""
    from dsedge.calibration.sensitivity import grow_int8_groups

    units = {"ok": (40, 0.001), "blk.conv_a": (30, 0.0), "blk.conv_bad": (20, 0.05), "blk.tiny": (0, 0.0)}
    groups, macs, build, evaluate, log = _grow_pipeline(units)
    block = groups.pop("blk.conv_a") + groups.pop("blk.conv_bad") + groups.pop("blk.tiny")
    groups["blk"] = block
    parts = {"blk": {"blk.conv_bad": ["blk.conv_bad_n"], "blk.conv_a": ["blk.conv_a_n"], "blk.tiny": ["blk.tiny_n"]}}
    _, excluded, report = grow_int8_groups(groups, [], build, evaluate, {"accuracy": 0.9},
                                           Budget.legacy(None, 0.99), 1000, macs, parts=parts)
    trace = [(t["group"], t["kept"]) for t in report.trace]
    assert trace == [("ok", True), ("blk", False), ("blk.conv_a", True), ("blk.conv_bad", False),
                     ("blk.tiny", False)]
    assert report.trace[2]["note"] == "part of blk" and "saves <" in report.trace[4]["note"]
    assert log["builds"][-1] == ["blk.conv_a", "blk.conv_bad", "ok"]  # the bad part tried on top of the kept ones
    assert excluded == ["blk.conv_bad_n", "blk.tiny_n"]
    assert report.kept_float == ["blk.conv_bad"] and report.met_budget  # the MAC-less part is not listed
    assert report.final["int8_mac_fraction"] == pytest.approx(70 / 90)


def test_block_parts_split_a_block_by_sub_module() -> None:
    from dsedge.calibration.sensitivity import block_parts

    parts = block_parts(exported_like_model())
    assert set(parts) == {"layer1.0", "layer2.0"}
    assert sum(len(v) for v in parts["layer1.0"].values()) == 4
