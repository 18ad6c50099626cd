"""`dsedge.engines.base`: the one softmax and the runner-based `predict_probs` (bench and INT8 calibration share it)."""

from __future__ import annotations

import numpy as np

from dsedge.engines.base import Runner, RunnerInfo, predict_probs, softmax


class _Linear(Runner):
    """Logits = per-image channel means; records the batch sizes it was called with."""

    def __init__(self, max_batch: int | None = None) -> None:
        self.max_batch = max_batch
        self.sizes: list[int] = []

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("fake", "fp32", "cpu", "0")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        return batch.mean(axis=(2, 3)).astype(np.float32)


def test_softmax_dtype_and_temperature() -> None:
    logits = np.array([[2.0, 1.0, -1.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    p = softmax(logits)
    assert p.dtype == np.float32 and np.allclose(p.sum(axis=1), 1.0)
    p64 = softmax(logits, axis=1, temperature=2.0, dtype=np.float64)
    assert p64.dtype == np.float64
    assert np.array_equal(p64, softmax(logits / 2.0, dtype=np.float64))
    assert p64[0].max() < p[0].max()  # a higher temperature softens


def test_predict_probs_pads_the_last_chunk_unless_told_not_to() -> None:
    x = np.random.default_rng(0).normal(size=(10, 3, 4, 4)).astype(np.float32)
    expected = softmax(x.mean(axis=(2, 3)))
    seen: list[int] = []
    padded = _Linear()
    assert np.allclose(predict_probs(padded, x, batch_size=4, progress=seen.append), expected, atol=1e-7)
    assert padded.sizes == [4, 4, 4] and seen == [4, 4, 2]
    unpadded = _Linear()
    assert np.allclose(predict_probs(unpadded, x, batch_size=4, pad=False), expected, atol=1e-7)
    assert unpadded.sizes == [4, 4, 2]
    limited = _Linear(max_batch=3)
    out = predict_probs(limited, x, batch_size=32)
    assert out.dtype == np.float32 and out.shape == (10, 3) and limited.sizes == [3, 3, 3, 3]


def test_bench_reexports_the_same_function() -> None:
    from dsedge.bench.accuracy import predict_probs as bench_predict_probs

    assert bench_predict_probs is predict_probs
