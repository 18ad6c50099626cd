"""Focal loss: the formula, its gamma = 0 limit, and the per-class alpha derivation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsedge.errors import DsedgeError
from dsedge.train.loss import FocalLoss, alpha_from_labels, check_alpha, focal_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, generator=g) * 3, torch.randint(0, 3, (16,), generator=g)


def test_gamma0_equals_alpha_weighted_cross_entropy(batch):
    logits, y = batch
    alpha = torch.tensor([0.2, 0.3, 0.5])
    expected = F.cross_entropy(logits, y, weight=alpha, reduction="none").mean()
    assert torch.allclose(focal_loss(logits, y, alpha, gamma=0.0), expected, atol=1e-6)
    assert torch.allclose(focal_loss(logits, y, None, gamma=0.0), F.cross_entropy(logits, y), atol=1e-6)


def test_gamma2_matches_formula(batch):
    logits, y = batch
    alpha = np.array([0.25, 0.35, 0.4])
    p = torch.softmax(logits.double(), 1).numpy()
    p_t = p[np.arange(len(y)), y.numpy()]
    expected = (-alpha[y.numpy()] * (1 - p_t) ** 2 * np.log(p_t)).mean()
    got = FocalLoss(alpha.tolist(), gamma=2.0)(logits, y)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    per_sample = focal_loss(logits, y, torch.tensor(alpha, dtype=torch.float32), 2.0, reduction="none")
    assert per_sample.shape == (16,)
    assert per_sample.sum().item() == pytest.approx(expected * 16, rel=1e-5)


def test_focal_downweights_easy_examples():
    easy = torch.tensor([[8.0, 0.0, 0.0]])
    hard = torch.tensor([[0.5, 0.0, 0.0]])
    y = torch.tensor([0])
    ratio_ce = F.cross_entropy(easy, y) / F.cross_entropy(hard, y)
    ratio_fl = focal_loss(easy, y, gamma=2.0) / focal_loss(hard, y, gamma=2.0)
    assert ratio_fl < ratio_ce / 100


def test_loss_is_float32_and_differentiable_under_bf16(batch):
    logits, y = batch
    logits = logits.bfloat16().requires_grad_()
    loss = focal_loss(logits, y, torch.tensor([0.3, 0.3, 0.4]), 2.0)
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(logits.grad.float()).all()


def test_alpha_from_training_frequencies():
    labels = [0] * 374 + [1] * 1372 + [2] * 254  # ISIC 2017 train: MEL, NV, SK
    alpha = alpha_from_labels(labels, 3)
    inv = np.array([1 / 374, 1 / 1372, 1 / 254])
    assert alpha == pytest.approx((inv / inv.sum()).tolist())
    assert sum(alpha) == pytest.approx(1.0)
    assert all(0 < a < 1 for a in alpha)
    assert alpha[2] > alpha[0] > alpha[1]  # rarer class -> larger alpha


def test_alpha_edge_cases():
    assert alpha_from_labels([0, 1, 0, 1], 2) == pytest.approx([0.5, 0.5])
    absent = alpha_from_labels([0, 0, 1], 3)  # class 2 absent counts as one sample
    assert absent[2] == max(absent) and sum(absent) == pytest.approx(1.0)
    with pytest.raises(DsedgeError):
        alpha_from_labels([0, 5], 3)
    with pytest.raises(DsedgeError, match="2 classes"):
        alpha_from_labels([0], 1)


def test_explicit_alpha_validation():
    assert check_alpha([0.25, 0.25, 0.5], 3) == [0.25, 0.25, 0.5]
    with pytest.raises(DsedgeError, match="one alpha per class"):
        check_alpha([0.5, 0.5], 3)
    with pytest.raises(DsedgeError, match=r"\(0, 1\]"):
        check_alpha([0.5, 0.0, 1.5], 3)


def test_module_alpha_follows_device_and_repr():
    m = FocalLoss([0.2, 0.3, 0.5])
    assert "alpha" in dict(m.named_buffers())
    assert "gamma=2" in repr(m)
