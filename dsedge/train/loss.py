"""Focal loss (Lin et al. 2017) with per-class alpha, the paper's training objective.

    FL(p_t) = -alpha_t * (1 - p_t)^gamma * log(p_t)

`p_t` is the softmax probability of the true class. gamma = 2 down-weights easy
examples; alpha_t re-weights classes. DESIGN §2 asks for alpha in (0, 1), larger
for rarer classes and derived from the training-set frequencies unless the user
gives an explicit list: we use normalised inverse frequencies, so the alphas sum
to 1. With gamma = 0 the loss is exactly alpha-weighted cross-entropy averaged
over samples (not over the sum of weights as `F.cross_entropy(weight=...)` does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsedge.errors import DsedgeError


def alpha_from_labels(labels: Sequence[int], num_classes: int) -> list[float]:
    """Per-class alpha from training labels: inverse class frequency, normalised to sum to 1.

    A class absent from the training labels counts as one sample, so its alpha is
    large but finite (a warning-worthy situation the data check already reports).
    """
    if num_classes < 2:
        raise DsedgeError(f"focal loss needs at least 2 classes, got {num_classes}")
    counts = Counter(int(y) for y in labels)
    unknown = sorted(set(counts) - set(range(num_classes)))
    if unknown:
        raise DsedgeError(f"labels {unknown} are outside 0..{num_classes - 1}")
    inv = [1.0 / max(counts.get(c, 0), 1) for c in range(num_classes)]
    total = sum(inv)
    return [v / total for v in inv]


def check_alpha(alpha: Sequence[float], num_classes: int) -> list[float]:
    """Validate an explicit alpha list (one value per class, each in (0, 1])."""
    alpha = [float(a) for a in alpha]
    if len(alpha) != num_classes:
        raise DsedgeError(
            f"focal_alpha has {len(alpha)} values but the data has {num_classes} classes",
            hint="give one alpha per class in the class order (e.g. MEL, NV, SK)",
        )
    if any(not 0.0 < a <= 1.0 for a in alpha):
        raise DsedgeError(f"focal_alpha values must lie in (0, 1], got {alpha}")
    return alpha


def focal_loss(
    logits: Tensor,
    target: Tensor,
    alpha: Tensor | None = None,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    """Multi-class focal loss of `logits` (N x C) against integer `target` (N).

    Computed in float32 from `log_softmax` (stable under bf16/fp16 autocast).
    `reduction`: "mean" (over samples), "sum" or "none".
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    logp = F.log_softmax(logits.float(), dim=1)
    logp_t = logp.gather(1, target.long().unsqueeze(1)).squeeze(1)
    p_t = logp_t.exp()
    loss = -logp_t if gamma == 0 else -((1.0 - p_t).clamp(min=0.0) ** gamma) * logp_t
    if alpha is not None:
        loss = alpha.to(loss.device, loss.dtype)[target.long()] * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`; `alpha` is a buffer so it follows `.to(device)`."""

    alpha: Tensor | None

    def __init__(self, alpha: Sequence[float] | None = None, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.register_buffer(
            "alpha", None if alpha is None else torch.tensor(list(alpha), dtype=torch.float32)
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_loss(logits, target, self.alpha, self.gamma)

    def extra_repr(self) -> str:
        a = None if self.alpha is None else [round(v, 4) for v in self.alpha.tolist()]
        return f"gamma={self.gamma:g}, alpha={a}"
