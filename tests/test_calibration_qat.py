"""QAT: fake quantization in TensorRT's form on CPU (ModelOpt when installed, plain PyTorch always),
PTQ-initialised scales, a float checkpoint out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dsedge.calibration.qat import (
    QatConfig,
    _loss,
    insert_fake_quant,
    insert_fake_quant_torch,
    kept_float,
    mix,
    module_input_amax,
    qat_checkpoint,
)


def _modelopt() -> None:
    pytest.importorskip("modelopt.torch.quantization", reason="the `qat` extra (nvidia-modelopt) is not installed")


@pytest.fixture(scope="module")
def float_model() -> torch.nn.Module:
    from dsedge.models import create_model

    torch.manual_seed(0)
    return create_model("ds_resnet50", num_classes=3).eval()


def test_fake_quant_is_tensorrt_form_and_leaves_the_model_alone(float_model: torch.nn.Module) -> None:
    _modelopt()
    x = torch.randn(2, 3, 32, 32)
    before = {k: v.clone() for k, v in float_model.state_dict().items()}
    qmodel, counts = insert_fake_quant(float_model, [x], {"layer1.0.conv1": 2.5, "no.such.module": 1.0})
    assert counts["quantizers"] == 69 * 2 + 2 + 2  # convs (input, weight), fc (input, weight), max/avg pool inputs
    assert counts["activation_scales_from_ptq"] == 1
    conv = qmodel.get_submodule("layer1.0.conv1")
    assert float(conv.input_quantizer.amax) == pytest.approx(2.5)
    assert conv.weight_quantizer.amax.shape[0] == conv.out_channels  # per-channel weights
    assert conv.input_quantizer.amax.numel() == 1  # per-tensor activations
    assert not any("quantizer" in n for n, _ in qmodel.get_submodule("layer1.0.simam1").named_modules()) \
        if hasattr(qmodel.get_submodule("layer1.0"), "simam1") else True
    with torch.no_grad():
        ref, out = float_model(x), qmodel(x)
    assert not torch.equal(ref, out) and torch.isfinite(out).all()
    assert all(torch.equal(v, float_model.state_dict()[k]) for k, v in before.items())


def test_qat_checkpoint_end_to_end(tmp_path: Path, tiny_isic_session: Path) -> None:
    _modelopt()
    from dsedge.calibration.int8 import INT8_NAME, calibrate_bundle
    from dsedge.calibration.rules import check_qdq_rules
    from dsedge.config import PreprocessConfig
    from dsedge.export.bundle import export_bundle
    from dsedge.models import create_model
    from dsedge.models.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "ckpt", create_model("ds_resnet50").eval(),
                           {"model": "ds_resnet50", "classes": ["MEL", "NV", "SK"],
                            "preprocessing": PreprocessConfig.for_size(32).to_dict(), "model_kwargs": {}})
    bundle = export_bundle(ckpt, tmp_path / "bundle", parity_images=2)
    cfg = QatConfig(epochs=1, max_batches=2, batch_size=4, calib_images=8, lr=1e-4, keep_float=())
    out = qat_checkpoint(ckpt, tiny_isic_session, tmp_path / "qat", cfg, bundle=bundle)
    tuned, meta = load_checkpoint(out)
    original, _ = load_checkpoint(ckpt)
    rec = meta["qat"]
    assert rec["quantizers"] == 142 and rec["activation_scales_from_ptq"] >= 60
    assert len(rec["epoch_losses"]) == 1 and np.isfinite(rec["epoch_losses"][0])
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    assert changed and all("running" not in k for k in changed)  # weights moved, BatchNorm statistics frozen
    qb = export_bundle(out, tmp_path / "qat-bundle", parity_images=2)
    calibrate_bundle(qb, tiny_isic_session, num_images=8, sensitivity=False, max_acc_drop=100.0, mixed_fp16=False)
    assert check_qdq_rules(qb / INT8_NAME) == []


def test_module_input_amax_maps_onnx_inputs_to_modules(tiny_bundle_pair: tuple[Path, Path, Path],
                                                        float_model: torch.nn.Module) -> None:
    """BatchNorm folding renames the conv nodes after their BatchNorm: matching goes by order and shape.

    The bundle has a `cam` output (as `dsedge export --cam` makes the shipped one): its extra 1x1 conv
    has no module and must not shift the matching (it once left all 69 convs unmatched)."""
    import onnx

    b = tiny_bundle_pair[0]  # matching goes by order and shapes, so float_model's own weights need no export
    graph = onnx.load(str(b / "model.onnx")).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 70  # 69 module convs and the cam conv
    ranges = {n.input[0]: (-1.0, float(i + 1)) for i, n in enumerate(convs)}
    amax = module_input_amax(b / "model.onnx", ranges, float_model, torch.randn(1, 3, 32, 32))
    assert amax["conv1"] == 1.0  # the stem conv runs first
    convs_matched = {k for k in amax if isinstance(float_model.get_submodule(k), torch.nn.Conv2d)}
    assert len(convs_matched) == 69  # every conv, the downsample convs included (they share their input tensor)
    first_block = {k: v for k, v in amax.items() if k.startswith("layer1.0.")}
    assert set(first_block) >= {"layer1.0.conv1", "layer1.0.conv3"}


def test_torch_fake_quant_is_tensorrt_form_and_leaves_the_model_alone(float_model: torch.nn.Module) -> None:
    """Without ModelOpt: per-channel symmetric weights, per-tensor symmetric inputs, SimAM float, names kept."""
    x = torch.randn(2, 3, 32, 32)
    before = {k: v.clone() for k, v in float_model.state_dict().items()}
    qmodel, counts = insert_fake_quant_torch(float_model, [x], {"layer1.0.conv1": 2.5, "no.such.module": 1.0})
    assert counts == {"quantizers": 70 * 2, "activation_scales_from_ptq": 1}  # 69 convs + fc: input and weight
    assert qmodel.get_submodule("layer1.0.conv1").dsedge_input_amax == pytest.approx(2.5)
    assert set(qmodel.state_dict()) == set(float_model.state_dict())
    conv = qmodel.get_submodule("layer2.0.conv1")
    from dsedge.calibration.qat import _fq_weight

    wq = _fq_weight(conv.weight.detach())
    scale = conv.weight.detach().abs().flatten(1).amax(1) / 127.0  # one scale per output channel
    codes = wq.flatten(1) / scale[:, None]
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.abs().max() <= 127.0 + 1e-3
    assert not torch.equal(wq, conv.weight.detach())
    with torch.no_grad():
        ref, out = float_model(x), qmodel(x)
    assert not torch.equal(ref, out) and torch.isfinite(out).all()
    assert all(torch.equal(v, float_model.state_dict()[k]) for k, v in before.items())
    simam = [m for n, m in qmodel.named_modules() if "simam" in n.lower()]
    assert simam and all(not hasattr(m, "dsedge_input_amax") for m in simam)


def test_kept_float_layers_get_no_fake_quantization(float_model: torch.nn.Module) -> None:
    """By default QAT leaves float what `dsedge calibrate` leaves float: the depthwise convs and the fc head."""
    depthwise = [n for n, m in float_model.named_modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert depthwise and all(kept_float(float_model.get_submodule(n), ("depthwise", "head")) for n in depthwise)
    assert not kept_float(float_model.get_submodule("layer1.0.conv1"), ("depthwise", "head"))
    assert not kept_float(float_model.get_submodule("fc"), ("depthwise",))
    qmodel, counts = insert_fake_quant_torch(float_model, [torch.randn(2, 3, 32, 32)],
                                             keep_float=QatConfig().keep_float)
    assert counts["quantizers"] == 2 * (69 - len(depthwise))
    assert not hasattr(qmodel.get_submodule(depthwise[0]), "dsedge_input_amax")
    assert not hasattr(qmodel.get_submodule("fc"), "dsedge_input_amax")
    assert hasattr(qmodel.get_submodule("layer1.0.conv1"), "dsedge_input_amax")


def test_logits_loss_weighs_near_ties_like_sure_images() -> None:
    """KL on a saturated softmax hardly moves; the logit loss sees the same error on sure and tied inputs."""
    teacher = torch.tensor([[12.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    student = teacher + torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0])
    kd = _loss(QatConfig(loss="kd"), student[:1], teacher[:1], labels[:1])
    logits_sure = _loss(QatConfig(loss="logits"), student[:1], teacher[:1], labels[:1])
    logits_tie = _loss(QatConfig(loss="logits"), student[1:], teacher[1:], labels[1:])
    assert float(kd) < 1e-4 and float(logits_sure) == pytest.approx(1 / 3) == float(logits_tie)
    assert float(_loss(QatConfig(loss="logits"), teacher, teacher, labels)) == 0.0


def test_mixup_blends_pairs_of_images_and_weighs_both_labels() -> None:
    """Each mixed input is lam * own + (1 - lam) * partner's; CE weighs the two labels by the same lam."""
    torch.manual_seed(0)
    x = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(6)])
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    mixed, own, partner, lam = mix(x, y, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(own, y) and sorted(partner.tolist()) == sorted(y.tolist()) and ((lam > 0) & (lam < 1)).all()
    assert not torch.equal(mixed, x)
    partner_value = (mixed[:, 0, 0, 0] - lam * x[:, 0, 0, 0]) / (1 - lam)  # recover which image was blended in
    assert torch.allclose(partner_value, y.new_tensor([int(round(float(v))) for v in partner_value]).float(), atol=1e-4)
    assert torch.equal(y[partner_value.round().long()], partner)
    assert torch.allclose(mixed.flatten(1).std(1), torch.zeros(6), atol=1e-6)  # blended whole images, not pixels
    logits = torch.randn(6, 3)
    ce = _loss(QatConfig(loss="ce"), logits, logits, own, partner, lam)
    nll = torch.nn.functional.cross_entropy
    expected = (lam * nll(logits, own, reduction="none") + (1 - lam) * nll(logits, partner, reduction="none")).mean()
    assert float(ce) == pytest.approx(float(expected))
    assert float(_loss(QatConfig(loss="ce"), logits, logits, own)) == pytest.approx(float(nll(logits, own)))


def test_torch_fake_quant_passes_gradients_straight_through(float_model: torch.nn.Module) -> None:
    qmodel, _ = insert_fake_quant_torch(float_model, [torch.randn(2, 3, 32, 32)])
    qmodel.train()
    qmodel(torch.randn(2, 3, 32, 32)).sum().backward()
    grad = qmodel.get_submodule("layer3.1.conv1").weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_qat_checkpoint_end_to_end_with_torch_fake_quant(tmp_path: Path, tiny_isic_session: Path,
                                                          tiny_bundle_pair: tuple[Path, Path, Path]) -> None:
    """The documented commands with plain PyTorch fake quantization: `dsedge qat` (a few steps on the
    synthetic ISIC tree), then `dsedge calibrate --weights` to a rule-checked Q/DQ model in the bundle."""
    import shutil

    from typer.testing import CliRunner

    from dsedge.bundle import load_bundle
    from dsedge.calibration.int8 import INT8_NAME
    from dsedge.calibration.rules import check_qdq_rules
    from dsedge.cli import app
    from dsedge.models.checkpoint import load_checkpoint

    bundle = Path(shutil.copytree(tiny_bundle_pair[0], tmp_path / "bundle"))  # calibrate writes into it
    ckpt = tiny_bundle_pair[1]
    res = CliRunner().invoke(app, [
        "qat", str(ckpt), "--data", str(tiny_isic_session), "--out", str(tmp_path / "qat"), "--bundle", str(bundle),
        "--fake-quant", "torch", "--epochs", "1", "--max-batches", "2", "--batch-size", "4",
        "--calib-images", "8", "--lr", "1e-4", "--mixup", "1.0"])
    assert res.exit_code == 0, res.output
    assert f"next: dsedge calibrate {bundle}" in res.output and "--weights" in res.output
    tuned, meta = load_checkpoint(tmp_path / "qat")
    original, _ = load_checkpoint(ckpt)
    rec = meta["qat"]
    assert rec["fake_quant"].startswith("torch") and rec["quantizers"] == 2 * (69 - 32)  # depthwise and fc float
    assert rec["keep_float"] == ["depthwise", "head"] and rec["mixup"] == 1.0
    assert rec["activation_scales_from_ptq"] == 69 - 32  # dsedge's PTQ ranges reached every fake-quantized conv
    assert len(rec["epoch_losses"]) == 1 and np.isfinite(rec["epoch_losses"][0])
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    assert changed and all("running" not in k for k in changed)  # weights moved, BatchNorm statistics frozen
    res = CliRunner().invoke(app, [
        "calibrate", str(bundle), "--data", str(tiny_isic_session), "--weights", str(tmp_path / "qat"),
        "--num-images", "8", "--no-sensitivity", "--min-agreement", "off", "--max-mel-auc-delta", "off",
        "--max-acc-delta", "off", "--max-mel-referrals-changed", "off", "--allow-mostly-float", "--no-mixed-fp16"])
    assert res.exit_code == 0, res.output
    b = load_bundle(bundle)
    assert check_qdq_rules(bundle / INT8_NAME) == [] and b.artifacts[INT8_NAME]["weights"] == "qat.safetensors"
    assert b.manifest["calibration"]["weights"]["qat"]["epoch_losses"] == rec["epoch_losses"]


def test_unknown_fake_quant_backend_is_refused() -> None:
    from dsedge.calibration.qat import _backend

    with pytest.raises(ValueError, match="auto, modelopt or torch"):
        _backend("tensorflow")
    assert _backend("torch") == "torch" and _backend("auto") in ("modelopt", "torch")


def test_qat_command_refuses_an_unknown_loss_with_a_clear_error(tmp_path: Path, capsys) -> None:
    from dsedge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["qat", "isic2017", "--data", str(tmp_path), "--out", str(tmp_path / "q"), "--loss", "mse"])
    assert e.value.code not in (0, None)
    captured = capsys.readouterr()
    assert "--loss must be kd, logits, ce or kd+ce" in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err


def test_torch_fake_quant_computes_what_the_exported_qdq_file_computes(
        tmp_path: Path, tiny_bundle_pair: tuple[Path, Path, Path]) -> None:
    """QAT trains the function the INT8 file runs: same ranges (calibrate's, mapped to modules), same layers
    float (depthwise, head), same placement; ONNX Runtime's Q/DQ output sits next to the torch fake-quant output,
    far closer than either is to float."""
    import onnx
    import onnxruntime as ort

    from dsedge.calibration import int8
    from dsedge.calibration import reader as rd
    from dsedge.calibration.sensitivity import node_kinds
    from dsedge.models.checkpoint import load_checkpoint

    b, ckpt, _ = tiny_bundle_pair
    float_model, meta = load_checkpoint(ckpt)
    pre = meta["preprocessing"]
    fp32 = b / "model.onnx"
    ranges_path = int8.compute_ranges(fp32, rd.synthetic_set(16, 0), pre, "percentile", tmp_path)
    kinds = node_kinds(onnx.load(str(fp32), load_external_data=False))
    qdq = int8.quantize_with_ranges(fp32, tmp_path / "q.onnx", ranges_path, "percentile",
                                    nodes_to_exclude=kinds["head"] + kinds["depthwise"])
    x = rd.synthetic_set(8, 1).load(0, 8, pre)
    amax = module_input_amax(fp32, int8.ranges_minmax(ranges_path), float_model, torch.from_numpy(x[:1]))
    fq, _ = insert_fake_quant_torch(float_model, [torch.from_numpy(x[:2])], amax, QatConfig().keep_float)
    with torch.no_grad():
        lf, lq = float_model.eval()(torch.from_numpy(x)).numpy(), fq.eval()(torch.from_numpy(x)).numpy()
    lo = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})[0]
    other, _ = insert_fake_quant_torch(float_model, [torch.from_numpy(x[:2])], amax, ())  # depthwise INT8 too
    with torch.no_grad():
        lm = other.eval()(torch.from_numpy(x)).numpy()
    quant_noise, matched, mismatched = (np.abs(lq - lf).mean(), np.abs(lo - lq).mean(), np.abs(lo - lm).mean())
    assert 0 < matched < 0.5 * quant_noise  # at 224 px, trained weights: 0.012 against 2.7
    assert matched < 0.5 * mismatched  # a placement QAT does not share is visibly another function
