"""TorchRunner: same logits as the model, checkpoint and random-init sources, precision gating, torch.compile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dsedge.engines import torch_runner as tr
from dsedge.errors import EngineError
from dsedge.models.checkpoint import save_checkpoint
from dsedge.models.zoo import create_model

SIZE = 32


def _batch(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def _expected(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(x)).numpy()


def test_random_init_is_seeded_and_matches_the_model() -> None:
    x = _batch()
    torch.manual_seed(7)
    model = create_model("ds_resnet50")
    with tr.TorchRunner(seed=7, device="cpu") as runner:
        y = runner.infer(x)
        assert runner.info.backend == "torch" and runner.info.precision == "fp32"
        assert runner.info.device == "cpu" and "random init" in runner.info.extra["source"]
        assert set(runner.first_call_seconds) == {2}
    assert y.dtype == np.float32 and y.shape == (2, 3)
    np.testing.assert_allclose(y, _expected(model, x), atol=1e-5, rtol=1e-4)


def test_checkpoint_source(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = create_model("ds_resnet50")
    weights = save_checkpoint(tmp_path / "ck", model,
                              {"model": "ds_resnet50", "classes": ["MEL", "NV", "SK"], "model_kwargs": {}})
    x = _batch(1, seed=1)
    with tr.TorchRunner(checkpoint=weights, device="cpu") as runner:
        assert "checkpoint ck.safetensors" == runner.info.extra["source"]
        np.testing.assert_allclose(runner.infer(x), _expected(model, x), atol=1e-5, rtol=1e-4)


def test_cpu_precision_gating() -> None:
    with pytest.raises(EngineError, match="fp16"):
        tr.TorchRunner(precision="fp16", device="cpu")
    with pytest.raises(EngineError, match="precision must be one of"):
        tr.TorchRunner(precision="int8", device="cpu")
    ok, why = tr.precision_supported("bf16", torch.device("cpu"))
    assert ok == tr.cpu_bf16_supported() and (ok or "bf16" in why)


def test_bf16_on_cpu_follows_fp32_when_supported() -> None:
    if not tr.cpu_bf16_supported():
        with pytest.raises(EngineError, match="bf16"):
            tr.TorchRunner(precision="bf16", device="cpu")
        return
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    x = _batch(4)
    ref = _expected(model, x)
    with tr.TorchRunner(model, precision="bf16", device="cpu") as runner:
        y = runner.infer(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref, atol=5e-2, rtol=5e-2)


def test_bad_devices() -> None:
    with pytest.raises(EngineError, match="unknown device"):
        tr.resolve_device("tpu:0:x")
    with pytest.raises(EngineError):
        tr.resolve_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA"):
            tr.resolve_device("cuda")
    assert tr.resolve_device("cpu").type == "cpu"


def test_device_timings_need_cuda() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 3))
    with tr.TorchRunner(model, device="cpu") as runner, pytest.raises(EngineError, match="CUDA"):
        runner.device_timings(_batch(1), 2)


def test_compile_small_model_matches_eager() -> None:
    """torch.compile (CPU default mode) on a tiny model: same logits, compile cost kept out of latency."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    x = _batch(2)
    with tr.TorchRunner(model, compile=True, device="cpu") as runner:
        assert runner.info.backend == "torch-compile" and runner.info.extra["compile_mode"] == "default"
        y = runner.infer(x)
        y2 = runner.infer(x)
    np.testing.assert_allclose(y, _expected(model, x), atol=1e-5, rtol=1e-4)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.gpu
def test_cuda_fp16_and_device_timings() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    torch.manual_seed(0)
    x = _batch(2)
    with tr.TorchRunner(precision="fp16", device="cuda") as runner:
        y = runner.infer(x)
        assert runner.info.device != "cpu" and runner.info.extra["channels_last"] is True
        for kw in ({"include_copies": True}, {"include_copies": False}, {"include_copies": False, "cuda_graph": True}):
            t = runner.device_timings(x, 5, warmup=2, **kw)
            assert t.shape == (5,) and (t > 0).all()
    with tr.TorchRunner(device="cuda") as ref:
        np.testing.assert_array_equal(y.argmax(1), ref.infer(x).argmax(1))


def _small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 3))


def test_compile_on_cpu_freezes_the_weights() -> None:
    """Inductor freezing (the CPU default) makes the weights constants of the compiled graph: changing
    the module's weights afterwards no longer changes the output — proof that freezing was applied."""
    x = _batch(2)
    model = _small_model()
    expected = _expected(model, x)
    with tr.TorchRunner(model, device="cpu", compile=True) as runner:
        assert runner.freezing and runner.info.extra["freezing"] is True
        np.testing.assert_allclose(runner.infer(x), expected, atol=1e-4, rtol=1e-4)
        with torch.no_grad():
            model[0].weight.mul_(2.0)
        np.testing.assert_allclose(runner.infer(x), expected, atol=1e-4, rtol=1e-4)  # still the frozen weights
    import torch._inductor.config as inductor_config

    assert inductor_config.freezing is False  # patched around calls only, never left on globally


def test_bf16_autocast_keeps_fp32_weights() -> None:
    if not tr.cpu_bf16_supported():
        pytest.skip("this CPU has no native bf16")
    x = _batch(2)
    model = _small_model()
    expected = _expected(model, x)
    with tr.TorchRunner(model, device="cpu", precision="bf16", autocast=True, channels_last=True) as runner:
        assert runner.info.extra["autocast"] == "bfloat16" and runner.info.extra["channels_last"] is True
        assert next(runner.model.parameters()).dtype == torch.float32
        y = runner.infer(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, atol=5e-2, rtol=5e-2)


def test_from_bundle_random_init_and_options() -> None:
    from types import SimpleNamespace

    bundle = SimpleNamespace(manifest={"model": {"name": "ds_resnet50"}, "classes": ["A", "B"]})
    with tr.TorchRunner.from_bundle(bundle, "fp32", device="cpu", seed=3, threads=1, interleaved=True) as runner:
        assert runner.infer(_batch(1)).shape == (1, 2)  # the bundle's class count
        assert "random init (seed 3)" in runner.info.extra["source"] and not runner.has_device_timer
