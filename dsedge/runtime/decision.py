"""From logits to what a device UI shows: calibrated probabilities, melanoma risk, a decision.

The policy lives in the bundle (`manifest["clinical"]`, written by `dsedge risk`) so every runtime
applies the same numbers:

- probabilities = softmax(logits / temperature)   (temperature fitted on the val split)
- melanoma_risk = calibrated P(MEL)
- decision      = "cannot assess" when an input-quality check failed (no inference is shown),
                  "refer" when melanoma_risk >= the stored threshold,
                  otherwise the most probable benign class (e.g. "NV", "SK")
- uncertain     = the top-2 margin of the calibrated probabilities is below `uncertain_margin`

The default margin, 0.15, flags results whose two most likely classes are within 15 points
(e.g. NV 0.45 vs SK 0.30): `dsedge risk` reports how often that happens on the fitting split and
the accuracy with and without the flag, so a device team can move it (`--uncertain-margin`).

A bundle without a fitted policy still works (temperature 1, "refer" when MEL is the top class)
but every result says `"risk_calibrated": false`, so a UI can refuse to show it clinically.
Torch-free: NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dsedge.engines.base import softmax

REFER = "refer"
CANNOT_ASSESS = "cannot assess"
MELANOMA = "MEL"
DEFAULT_UNCERTAIN_MARGIN = 0.15


def top2_margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability of each row of an N x C array (1.0 with a single class)."""
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    top = np.sort(probs, axis=1)
    return top[:, -1] - top[:, -2]


@dataclass(frozen=True)
class DecisionPolicy:
    """Temperature, melanoma threshold and uncertainty margin of one bundle."""

    classes: tuple[str, ...]
    temperature: float = 1.0
    threshold: float | None = None
    uncertain_margin: float = DEFAULT_UNCERTAIN_MARGIN
    melanoma_class: str = MELANOMA

    @property
    def fitted(self) -> bool:
        return self.threshold is not None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> DecisionPolicy:
        block = manifest.get("clinical") or {}
        point = block.get("operating_point") or {}
        return cls(
            classes=tuple(manifest["classes"]),
            temperature=float(block.get("temperature", 1.0)),
            threshold=None if point.get("threshold") is None else float(point["threshold"]),
            uncertain_margin=float(block.get("uncertain_margin", DEFAULT_UNCERTAIN_MARGIN)),
            melanoma_class=str(point.get("class", MELANOMA)),
        )

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N x C, float64) from raw logits."""
        return softmax(logits, axis=1, temperature=self.temperature, dtype=np.float64)

    def decide(self, probs: np.ndarray) -> dict[str, Any]:
        """Decision fields for one image's calibrated probability vector."""
        order = np.argsort(probs)[::-1]
        margin = float(top2_margin(probs[None, :])[0])
        out: dict[str, Any] = {"melanoma_risk": None, "uncertain": margin < self.uncertain_margin,
                               "top2_margin": round(margin, 6), "risk_calibrated": self.fitted}
        if self.melanoma_class not in self.classes:
            out["decision"] = self.classes[int(order[0])]
            return out
        mel = self.classes.index(self.melanoma_class)
        risk = float(probs[mel])
        out["melanoma_risk"] = risk
        refer = risk >= self.threshold if self.threshold is not None else int(order[0]) == mel
        if refer:
            out["decision"] = REFER
        else:
            benign = [i for i in order if i != mel]
            out["decision"] = self.classes[int(benign[0])]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "threshold": self.threshold,
                "uncertain_margin": self.uncertain_margin, "melanoma_class": self.melanoma_class,
                "fitted": self.fitted}


def cannot_assess(reasons: list[str]) -> dict[str, Any]:
    """Decision fields for an image that failed a quality check (nothing from the model is shown)."""
    return {"melanoma_risk": None, "uncertain": None, "top2_margin": None, "risk_calibrated": None,
            "decision": CANNOT_ASSESS, "reasons": list(reasons)}
