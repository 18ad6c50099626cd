"""DecisionPolicy: refer at the threshold, else the top benign class; uncertain on a small margin."""

from __future__ import annotations

import numpy as np
import pytest

from dsedge.runtime.decision import CANNOT_ASSESS, REFER, DecisionPolicy, cannot_assess

CLASSES = ["MEL", "NV", "SK"]


def manifest(threshold: float | None = 0.3, temperature: float = 2.0, margin: float = 0.15) -> dict:
    m = {"classes": CLASSES}
    if threshold is not None:
        m["clinical"] = {"temperature": temperature, "uncertain_margin": margin,
                         "operating_point": {"class": "MEL", "threshold": threshold}}
    return m


def test_refer_at_or_above_the_threshold_even_when_mel_is_not_top() -> None:
    policy = DecisionPolicy.from_manifest(manifest(0.3))
    assert policy.fitted and policy.temperature == 2.0
    at = policy.decide(np.array([0.30, 0.60, 0.10]))
    assert at["decision"] == REFER and at["melanoma_risk"] == pytest.approx(0.3)
    below = policy.decide(np.array([0.29, 0.21, 0.50]))
    assert below["decision"] == "SK" and not below["uncertain"] and below["risk_calibrated"]


def test_uncertain_when_the_top_two_are_close() -> None:
    policy = DecisionPolicy.from_manifest(manifest(0.9, margin=0.15))
    r = policy.decide(np.array([0.10, 0.46, 0.44]))
    assert r["uncertain"] and r["decision"] == "NV" and r["top2_margin"] == pytest.approx(0.02)


def test_temperature_softens_probabilities() -> None:
    policy = DecisionPolicy.from_manifest(manifest(temperature=2.0))
    logits = np.array([[4.0, 0.0, 0.0]])
    raw = np.exp(logits) / np.exp(logits).sum()
    cal = policy.probabilities(logits)
    assert cal[0, 0] < raw[0, 0] and cal.sum() == pytest.approx(1.0) and cal.argmax() == 0
    np.testing.assert_allclose(cal, np.exp(logits / 2) / np.exp(logits / 2).sum())


def test_unfitted_bundle_refers_only_on_top_mel_and_says_so() -> None:
    policy = DecisionPolicy.from_manifest(manifest(None))
    assert not policy.fitted and policy.temperature == 1.0
    assert policy.decide(np.array([0.5, 0.3, 0.2]))["decision"] == REFER
    r = policy.decide(np.array([0.4, 0.45, 0.15]))
    assert r["decision"] == "NV" and r["risk_calibrated"] is False


def test_models_without_mel_and_cannot_assess() -> None:
    policy = DecisionPolicy.from_manifest({"classes": ["A", "B"]})
    r = policy.decide(np.array([0.2, 0.8]))
    assert r["decision"] == "B" and r["melanoma_risk"] is None
    c = cannot_assess(["too_dark"])
    assert c["decision"] == CANNOT_ASSESS and c["reasons"] == ["too_dark"] and c["melanoma_risk"] is None


def test_top2_margin_of_a_batch() -> None:
    from dsedge.runtime.decision import top2_margin

    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.41, 0.39]])
    np.testing.assert_allclose(top2_margin(probs), [0.3, 0.02])
    np.testing.assert_allclose(top2_margin(np.ones((2, 1))), [1.0, 1.0])
