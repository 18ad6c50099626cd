"""The end-of-run summary of `dsedge predict`: counts, the claimed operating point, how INT8 the engine is."""

from __future__ import annotations

from dsedge.runtime.results import run_summary, summary_line


def test_summary_names_the_int8_share_of_the_engine_file() -> None:
    manifest = {"artifacts": {"model.int8.onnx": {"precision": "int8", "int8_mac_fraction": 0.86},
                              "model.onnx": {"precision": "fp32"}}}
    results = [{"decision": "NV"}, {"decision": "refer"}]
    summary = run_summary(results, ["MEL", "NV", "SK"], manifest, artifact="model.int8.onnx")
    assert summary["engine"] == {"artifact": "model.int8.onnx", "precision": "int8", "int8_mac_fraction": 0.86}
    assert "model.int8.onnx: 86 % of MACs in INT8" in summary_line(summary)
    fp32 = run_summary(results, ["MEL", "NV", "SK"], manifest, artifact="model.onnx")
    assert "MACs" not in summary_line(fp32)
    assert run_summary(results, ["MEL", "NV", "SK"], manifest)["engine"] is None
