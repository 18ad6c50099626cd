"""The FP16 artifact: float16 weights, float32 I/O, SimAM kept float32, valid and in agreement.

Structure and agreement on a tiny conv/SimAM net (fast); the >= 99.5 % top-1
agreement on the real ISIC 2017 validation images is the slow test at the end
(random-init DS-ResNet50, since no trained checkpoint ships with the repo).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto
from torch import nn

from dsedge.export.fp16 import convert_fp16, count_fp16_initializers
from dsedge.export.onnx import INPUT_NAME, check_onnx, export_onnx
from dsedge.export.simam_function import DOMAIN
from dsedge.models.simam import SimAM


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.att1 = SimAM(1e-4)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.att2 = SimAM(1e-4)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.att2(self.conv2(self.att1(torch.relu(self.conv1(x)))))
        return self.fc(y.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    model = Net().eval()
    fp32 = export_onnx(model, 24, probs=True).model
    return model, fp32, convert_fp16(fp32)


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {INPUT_NAME: x})


def test_fp16_validates_with_float32_io(pair) -> None:
    _, fp32, fp16 = pair
    onnx.checker.check_model(fp16, full_check=True)
    check_onnx(fp16)
    for value in list(fp16.graph.input) + list(fp16.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT, value.name
    f16, f32 = count_fp16_initializers(fp16)
    assert f16 >= 4 and f32 == 0  # conv and fc weights/biases all became float16
    assert count_fp16_initializers(fp32) == (0, f16)  # the source model was not modified


def test_simam_runs_in_float32_inside_the_fp16_model(pair) -> None:
    _, _, fp16 = pair
    inferred = check_onnx(fp16)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    calls = [n for n in inferred.graph.node if n.domain == DOMAIN]
    assert len(calls) == 2
    for node in calls:
        assert types[node.input[0]] == TensorProto.FLOAT
        assert types[node.output[0]] == TensorProto.FLOAT
    convs = [n for n in inferred.graph.node if n.op_type == "Conv"]
    assert all(types[n.output[0]] == TensorProto.FLOAT16 for n in convs)


def test_fp16_agrees_with_fp32_and_pytorch(pair) -> None:
    model, fp32, fp16 = pair
    x = np.random.default_rng(0).standard_normal((16, 3, 24, 24), dtype=np.float32)
    logits32, probs32 = _run(fp32, x)
    logits16, probs16 = _run(fp16, x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(logits32 - ref).max() <= 1e-5
    assert probs16.dtype == np.float32
    np.testing.assert_allclose(probs16.sum(1), 1.0, atol=1e-5)
    assert np.abs(probs16 - probs32).max() < 5e-3
    assert np.abs(logits16 - logits32).max() < 5e-2
    assert not np.array_equal(logits16, logits32)  # it really is a different (rounded) model


@pytest.mark.slow
def test_fp16_top1_agreement_on_isic_val(isic_root, tmp_path) -> None:
    """>= 99.5 % top-1 agreement with PyTorch FP32 on the 150 ISIC 2017 validation images.

    Random-init weights (no trained checkpoint is part of the repo) at 96 px to
    keep CI time down; `dsedge export --data` at 224 px is recorded in
    benchmarks/results/export.md.
    """
    from dsedge.bundle import load_bundle
    from dsedge.export import export_bundle

    out = export_bundle(None, tmp_path / "b", model_name="ds_resnet50", random_init=True,
                        image_size=96, data=isic_root, split="val")
    parity = load_bundle(out).manifest["parity"]
    assert parity["inputs"]["kind"] == "images" and parity["inputs"]["count"] == 150
    fp16 = parity["artifacts"]["model.fp16.onnx"]
    assert fp16["top1_agreement"] >= 0.995
    assert fp16["max_abs_prob_diff"] < 1e-2
    assert parity["artifacts"]["model.onnx"]["max_abs_logit_diff"] <= 1e-4
