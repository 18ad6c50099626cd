"""Layer precisions from the engine inspector's JSON (pure functions; the build test covers the TensorRT calls)."""

from __future__ import annotations

from dsedge.engines.trt_inspect import datatype_of, layer_precision, summarize_layers


def test_datatype_strings_from_both_inspector_spellings() -> None:
    assert datatype_of("Half") == "FP16" and datatype_of("Channel major FP16 format where channel % 8 == 0") == "FP16"
    assert datatype_of("Float") == "FP32" and datatype_of("Row major linear FP32") == "FP32"
    assert datatype_of("Int8") == "INT8" and datatype_of("Thirty-two wide channel vectorized row major Int8 format") == "INT8"
    assert datatype_of("BFloat16") == "BF16" and datatype_of("Int32") is None and datatype_of("Bool") is None


def test_layer_runs_in_its_narrowest_input() -> None:
    conv = {"Inputs": [{"Format/Datatype": "Int8"}], "Outputs": [{"Format/Datatype": "Half"}]}
    assert layer_precision(conv) == "INT8"
    shape_only = {"Inputs": [{"Format/Datatype": "Int32"}], "Outputs": [{"Format/Datatype": "Float"}]}
    assert layer_precision(shape_only) == "FP32"
    assert layer_precision({"Inputs": [], "Outputs": []}) is None


def test_summary_counts_precisions_and_names_fp32_layers() -> None:
    info = {"Layers": [
        {"Name": "conv1", "LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": "Int8"}]},
        {"Name": "simam_mean", "LayerType": "Reduce", "Inputs": [{"Format/Datatype": "Float"}]},
        {"Name": "dw", "LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": "Half"}]},
        {"Name": "reformat", "LayerType": "Reformat", "Inputs": [{"Format/Datatype": "Float"}]},
    ]}
    s = summarize_layers(info)
    assert s == {"detailed": True, "counts": {"FP16": 1, "FP32": 1, "INT8": 1}, "fp32_layers": ["simam_mean"],
                 "fp32_layer_count": 1}
    # built without DETAILED verbosity the inspector lists names only: say so instead of guessing
    assert summarize_layers({"Layers": ["conv1", "dw"]}) == {"detailed": False, "layers": 2}


def test_split_format_and_datatype_fields_are_read() -> None:
    """TensorRT 11's tooling reads "Format" and "Datatype" as two fields; both spellings give the same counts."""
    split = {"Layers": [
        {"Name": "conv1", "LayerType": "CaskConvolution", "Inputs": [{"Format": "Row major linear", "Datatype": "Int8"}]},
        {"Name": "simam_mean", "LayerType": "Reduce", "Inputs": [{"Format": "Row major linear", "Datatype": "Float"}]},
        {"Name": "dw", "LayerType": "CaskConvolution", "Inputs": [{"Format": "Channel major", "Datatype": "Half"}]},
    ]}
    s = summarize_layers(split)
    assert s["counts"] == {"FP16": 1, "FP32": 1, "INT8": 1} and s["fp32_layers"] == ["simam_mean"]
    assert "unreadable" not in s


def test_a_detailed_report_without_any_readable_type_is_flagged() -> None:
    info = {"Layers": [{"Name": "a", "LayerType": "Gemm", "Inputs": [{"Name": "x", "Kind": "?"}]},
                       {"Name": "b", "LayerType": "Gemm", "Outputs": [{"Name": "y"}]}]}
    s = summarize_layers(info)
    assert s["counts"] == {"other": 2} and s["unreadable"] is True
