"""From logits to what a device UI shows: calibrated probabilities, melanoma risk, a decision.

The policy lives in the bundle (its `clinical` section, written by `dsedge risk`) so every runtime
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

from dsedge import MELANOMA_CLASS
from dsedge.bundle import ManifestReader, read_manifest
from dsedge.stats import softmax

REFER = "refer"
CANNOT_ASSESS = "cannot assess"
MELANOMA = MELANOMA_CLASS
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
    def from_manifest(cls, manifest: dict[str, Any] | ManifestReader) -> DecisionPolicy:
        """The policy of a bundle (or a manifest dict); unfitted defaults where `dsedge risk` has not run."""
        m = read_manifest(manifest)
        block, point = m.clinical, m.operating_point
        return cls(
            classes=tuple(m.classes),
            temperature=float(block.get("temperature", 1.0)),
            threshold=None if point.get("threshold") is None else float(point["threshold"]),
            uncertain_margin=float(block.get("uncertain_margin", DEFAULT_UNCERTAIN_MARGIN)),
            melanoma_class=m.melanoma_class,
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


def _claim(name: str, entry: Any) -> str | None:
    """'sensitivity 0.90 (95 % CI 0.80-0.97, val split, n=30)' from one claim dict, or None when unusable."""
    if not isinstance(entry, dict):
        return None
    try:
        value = float(entry["value"])
    except (KeyError, TypeError, ValueError):
        return None
    text = f"{name} {value:.2f}"
    detail = []
    ci = entry.get("ci", entry.get("ci95"))
    try:
        lo, hi = (float(v) for v in ci)  # type: ignore[union-attr]
        detail.append(f"95 % CI {lo:.2f}-{hi:.2f}")
    except (TypeError, ValueError):
        pass
    if isinstance(entry.get("split"), str) and entry["split"]:
        detail.append(f"{entry['split']} split")
    if isinstance(entry.get("method"), str) and entry["method"]:
        detail.append(entry["method"])
    if isinstance(entry.get("n"), int) and not isinstance(entry.get("n"), bool):
        detail.append(f"n={entry['n']}")
    return text + (f" ({', '.join(detail)})" if detail else "")


def clinical_claim_line(manifest: dict[str, Any] | ManifestReader) -> str | None:
    """The operating point a "refer" stands on, in one line, or None when the bundle claims none.

    Read defensively from the bundle's operating point (`threshold`, and optional
    `sensitivity` / `specificity` dicts with `value`, `ci`, `split`, `method`, `n`): a reader of a
    "refer" must see which threshold made it and what sensitivity was measured on which data, and
    a claim that is absent or malformed is left out rather than invented.
    """
    if not isinstance(manifest, (dict, ManifestReader)):
        return None
    point = read_manifest(manifest).operating_point
    if not point:
        return None
    try:
        threshold = float(point["threshold"])
    except (KeyError, TypeError, ValueError):
        return None
    cls = point.get("class") if isinstance(point.get("class"), str) else MELANOMA
    claims = [c for c in (_claim("sensitivity", point.get("sensitivity")),
                          _claim("specificity", point.get("specificity"))) if c]
    line = f"refer when P({cls}) >= {threshold:.3f}"
    return f"{line}; claimed melanoma {'; '.join(claims)}" if claims else line


def decision_counts(results: list[dict[str, Any]], classes: list[str] | tuple[str, ...]) -> dict[str, int]:
    """How many results got each decision: refer, each benign class, cannot assess, errors.

    An image whose file could not be read counts under "errors" only (not also "cannot assess"),
    so the counts add up to the number of images.
    """
    counts: dict[str, int] = {REFER: 0, **{c: 0 for c in classes if c != MELANOMA}, CANNOT_ASSESS: 0, "errors": 0}
    for r in results:
        key = "errors" if r.get("error") else str(r.get("decision"))
        counts[key] = counts.get(key, 0) + 1
    return counts
