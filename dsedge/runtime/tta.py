"""Test-time augmentation over the 8 dihedral views of a dermoscopy image. Torch-free.

A dermoscopic image has no canonical orientation, and training augments with all 8 symmetries
of the square (90-degree rotations, flips), so each view is an equally valid input. Averaging
the model's *probabilities* over the 8 views (`dsedge.runtime.preprocess.dihedral_views`)
removes the orientation noise of a single answer.

`dihedral_average` returns log-probabilities in the place of logits: softmax(log p) = p when p
sums to 1, so any code that turns logits into probabilities with a softmax gets exactly the
averaged probabilities, and argmax is unchanged. A temperature T then acts as p^(1/T)
renormalised; a temperature or threshold fitted on single-view outputs is not fitted for TTA
outputs, so fit them on TTA outputs when TTA is used. The runner is called once, on a batch 8
times larger, so engines run one big batch instead of 8 small ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dsedge.runtime.preprocess import DIHEDRAL_VIEWS, dihedral_views
from dsedge.stats import softmax

#: The smallest probability kept before the log: a view-averaged probability of exactly 0 gives
#: a finite logit (-87.3) rather than -inf, which code that checks for finite logits accepts.
_FLOOR = np.finfo(np.float32).tiny


def dihedral_average(run_logits_fn: Callable[[np.ndarray], np.ndarray], batch_nchw: np.ndarray) -> np.ndarray:
    """N x K log-probabilities averaged over the 8 dihedral views of each of the N square images.

    `run_logits_fn` maps an M x C x H x W float batch to M x K logits; it is called once, with
    M = 8 N (each image's 8 views in a row). See the module docstring for why log-probabilities.
    """
    batch = np.asarray(batch_nchw)
    n = len(batch)
    logits = np.asarray(run_logits_fn(dihedral_views(batch)))
    if logits.ndim != 2 or logits.shape[0] != n * DIHEDRAL_VIEWS:
        raise ValueError(f"run_logits_fn returned shape {logits.shape} for {n * DIHEDRAL_VIEWS} views; "
                         f"expected ({n * DIHEDRAL_VIEWS}, classes)")
    probs = softmax(logits, axis=1, dtype=np.float64).reshape(n, DIHEDRAL_VIEWS, -1).mean(axis=1)
    return np.log(np.maximum(probs, _FLOOR)).astype(np.float32)
