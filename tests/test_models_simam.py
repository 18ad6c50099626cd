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
