"""SimAM against a float64 NumPy reference of the formula (DESIGN §2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsedge.models.simam import SimAM, simam


def simam_reference(x: np.ndarray, lam: float) -> np.ndarray:
    n = x.shape[2] * x.shape[3] - 1
    d = (x - x.mean(axis=(2, 3), keepdims=True)) ** 2
    v = d.sum(axis=(2, 3), keepdims=True) / n
    e_inv = d / (4 * (v + lam)) + 0.5
    return x * (1.0 / (1.0 + np.exp(-e_inv)))


@pytest.mark.parametrize("lam", [1e-4, 0.1])
@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 16, 14, 9), (3, 8, 2, 2)])
def test_simam_matches_numpy_reference_float64(shape: tuple[int, ...], lam: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape) * rng.uniform(0.1, 5.0)
    ours = SimAM(lam)(torch.from_numpy(x)).numpy()
    ref = simam_reference(x, lam)
    assert np.abs(ours - ref).max() < 1e-6


def test_simam_half_precision_uses_float32_statistics() -> None:
    x = torch.randn(2, 4, 8, 8) * 3
    out_bf16 = simam(x.to(torch.bfloat16), 1e-4)
    assert out_bf16.dtype == torch.bfloat16
    # bf16 input rounding dominates; statistics in fp32 keep the result close to the fp32 path.
    assert torch.allclose(out_bf16.float(), simam(x.to(torch.bfloat16).float(), 1e-4), atol=0.05)


def test_simam_lambda_changes_output_and_is_recorded() -> None:
    x = torch.randn(1, 2, 5, 5)
    assert not torch.allclose(SimAM(1e-4)(x), SimAM(10.0)(x))
    assert "lam=0.1" in repr(SimAM(0.1))
    with pytest.raises(ValueError):
        SimAM(0.0)


def test_simam_1x1_feature_map_is_finite() -> None:
    out = simam(torch.randn(2, 3, 1, 1))
    assert torch.isfinite(out).all()


def _simam_in_bf16(x: torch.Tensor, lam: float = 1e-4) -> torch.Tensor:
    """The formula with its statistics left in bf16: what SimAM must not compute."""
    n = x.shape[2] * x.shape[3] - 1
    d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
    return x * torch.sigmoid(d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + lam)) + 0.5)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_simam_statistics_are_float32_under_bf16_autocast(compiled: bool) -> None:
    """Eager and the training path's compiled SimAM (`dsedge.train.fused`) under CPU bf16 autocast.

    Channels with a mean of 1000 and a spread of 8: bf16 statistics are off by 4 % (output) and
    17 % (gradient) against float64 on the same bf16 input; float32 statistics by ~0.2 %.
    """
    from dsedge.train.fused import TrainSimAM

    torch.manual_seed(0)
    x = (1000 + 8 * torch.randn(2, 4, 8, 8)).to(torch.bfloat16)
    ref_in = x.double().requires_grad_()
    ref = simam(ref_in, 1e-4)
    ref.sum().backward()
    module = TrainSimAM(1e-4).train() if compiled else SimAM(1e-4)
    ours_in = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(ours_in)
    out.float().sum().backward()
    naive_in = x.clone().requires_grad_()
    _simam_in_bf16(naive_in).float().sum().backward()

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.detach().double() - b.detach()).norm() / b.detach().norm())

    assert out.dtype == torch.bfloat16
    assert rel(out, ref.detach()) < 0.005 and rel(ours_in.grad, ref_in.grad) < 0.01
    assert rel(naive_in.grad, ref_in.grad) > 0.05  # the check can tell bf16 statistics apart
