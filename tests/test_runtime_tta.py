"""Test-time augmentation: probabilities averaged over the 8 dihedral views, one batched call, torch-free."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dsedge.runtime.tta import dihedral_average
from dsedge.stats import softmax


def corner_logits(batch: np.ndarray) -> np.ndarray:
    """Orientation-dependent logits: two corners of channel 0 and a constant."""
    return np.stack([batch[:, 0, 0, 0] * 3, batch[:, 0, 0, -1] * 3, np.zeros(len(batch))], axis=1)


def views_by_hand(image: np.ndarray) -> list[np.ndarray]:
    turns = [np.rot90(image, k, axes=(1, 2)) for k in range(4)]
    return turns + [t[:, :, ::-1] for t in turns]


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(3, 2, 5, 5)).astype(np.float32)


def test_softmax_of_the_result_is_the_mean_probability_over_8_views(batch: np.ndarray):
    calls = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return corner_logits(x)

    out = dihedral_average(run, batch)
    assert calls == [(24, 2, 5, 5)]  # one call, 8 views per image
    assert out.shape == (3, 3) and out.dtype == np.float32
    for image, row in zip(batch, out, strict=True):
        expected = np.mean([softmax(corner_logits(v[None]), axis=1, dtype=np.float64)[0]
                            for v in views_by_hand(image)], axis=0)
        np.testing.assert_allclose(softmax(row[None], axis=1, dtype=np.float64)[0], expected, rtol=1e-5)
        single = softmax(corner_logits(image[None]), axis=1, dtype=np.float64)[0]
        assert not np.allclose(expected, single, atol=1e-3)  # the views do differ here


def test_result_does_not_depend_on_the_orientation_of_the_input(batch: np.ndarray):
    turned = np.ascontiguousarray(np.rot90(batch, 1, axes=(2, 3))[:, :, :, ::-1])
    np.testing.assert_allclose(dihedral_average(corner_logits, batch), dihedral_average(corner_logits, turned),
                               rtol=1e-5, atol=1e-6)


def test_a_zero_probability_stays_finite(batch: np.ndarray):
    out = dihedral_average(lambda x: np.tile([0.0, 1e4, -1e4], (len(x), 1)), batch)
    assert np.isfinite(out).all() and out[:, 1].max() == pytest.approx(0.0, abs=1e-6)


def test_wrong_runner_output_is_a_clear_error(batch: np.ndarray):
    with pytest.raises(ValueError, match="expected \\(24, classes\\)"):
        dihedral_average(lambda x: corner_logits(x[:3]), batch)
    with pytest.raises(ValueError, match="square"):
        dihedral_average(corner_logits, np.zeros((1, 3, 4, 5), np.float32))


def test_tta_module_is_torch_free():
    code = ("import sys, dsedge.runtime.tta; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
