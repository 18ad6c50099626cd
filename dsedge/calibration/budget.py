"""The INT8 accuracy budget: the quantized model must keep the FP32 model's decisions (issue 11).

An ACC-only budget passed a calibration whose melanoma AUC fell from 0.554 to
0.473, and another that flipped 9.3 % of the predictions: ACC can stay put
while individual answers change. A dermatoscope maker needs the INT8 engine to
give the FP32 model's answer, above all for melanoma, so the default budget is

* top-1 agreement with FP32 >= 99 % on the eval split;
* |delta melanoma AUC| <= 0.005;
* |delta ACC| <= 0.5 points (both directions: a "better" INT8 model disagrees too);
* at most 1 melanoma image whose referral changes at the bundle's operating point
  (judged on each image as it is, not on its rotated views) — judged only once the
  bundle has one (`dsedge.json` `clinical.operating_point`: a threshold on the
  temperature-calibrated melanoma probability, the same rule `dsedge.runtime.decision`
  refers patients by); "not judged" until then.

Every term has the statistical resolution to be judged: the old "melanoma recall not
lower" term compared recall over 240 melanoma *views*, so one view of one near-threshold
melanoma (0.4 %) failed it at every step of the search, which then kept every group float
and wrote an FP32 model named INT8. A count of melanoma *images* with a tolerance of one
says what a clinician cares about and cannot be tripped by a single view.

Every term is configurable (None switches a term off), every term is in the
report with its value, its limit and whether it held, and the budget is "met"
only when every judged term holds. |delta mean AUC| is reported always and
judged when `max_mean_auc_delta` is set. Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dsedge import MELANOMA_CLASS
from dsedge.clinical.calibration import softmax
from dsedge.comparator import delta


@dataclass(frozen=True)
class Budget:
    """Limits on how far INT8 may move from FP32; None turns a term off."""

    min_agreement: float | None = 0.99
    max_mel_auc_delta: float | None = 0.005
    max_acc_delta_points: float | None = 0.5
    max_mean_auc_delta: float | None = None
    mel_recall_not_lower: bool = False
    #: melanoma images (canonical view) whose referral may change; None: not judged.
    max_mel_referrals_changed: int | None = 1
    #: False: only an ACC *drop* counts (the pre-issue-11 rule); True: |delta ACC|.
    acc_two_sided: bool = True

    @classmethod
    def legacy(cls, max_acc_drop: float | None, min_agreement: float | None) -> Budget:
        """The pre-issue-11 keyword budget (`max_acc_drop=`, `min_agreement=`): only those two terms."""
        return cls(min_agreement=min_agreement or None, max_mel_auc_delta=None,
                   max_acc_delta_points=max_acc_drop, max_mean_auc_delta=None, mel_recall_not_lower=False,
                   max_mel_referrals_changed=None, acc_two_sided=False)

    @classmethod
    def off(cls) -> Budget:
        """Measure and report everything, judge nothing (benchmarks)."""
        return cls(None, None, None, None, False, None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OperatingPoint:
    """The bundle's melanoma referral rule: refer when softmax(logits / temperature)[MEL] >= threshold."""

    threshold: float
    temperature: float = 1.0
    melanoma_class: str = MELANOMA_CLASS


def operating_point(manifest: dict[str, Any]) -> OperatingPoint | None:
    """The bundle's fitted operating point (`clinical.operating_point`), or None while it has none."""
    clinical = manifest.get("clinical") or {}
    point = clinical.get("operating_point") or {}
    if point.get("threshold") is None:
        return None
    return OperatingPoint(float(point["threshold"]), float(clinical.get("temperature", 1.0)),
                          str(point.get("class", MELANOMA_CLASS)))


def mel_recall(probs: np.ndarray, labels: np.ndarray, classes: list[str], point: OperatingPoint | None) -> float | None:
    """Fraction of true melanomas the operating point refers; None without a point, a MEL class or melanomas.

    `probs` are plain softmax outputs; softmax(log(p) / T) equals softmax(logits / T).
    """
    if point is None or point.melanoma_class not in classes:
        return None
    mel = classes.index(point.melanoma_class)
    positives = np.asarray(labels) == mel
    if not positives.any():
        return None
    calibrated = softmax(np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)), point.temperature)
    return float(np.mean(calibrated[positives, mel] >= point.threshold))


def mel_referrals_changed(probs: np.ndarray, ref_probs: np.ndarray, labels: np.ndarray, classes: list[str],
                          point: OperatingPoint | None, views: int = 1) -> int | None:
    """Melanoma images whose referral differs between `probs` and FP32 `ref_probs`, on each image as it is.

    Rows are image-major with `views` orientations per image (`dihedral_views`); only view 0, the
    image as captured, decides a referral. None without a point, a MEL class or melanomas.
    """
    if point is None or point.melanoma_class not in classes:
        return None
    mel = classes.index(point.melanoma_class)
    canon = slice(0, None, max(1, views))
    positives = np.asarray(labels)[canon] == mel
    if not positives.any():
        return None

    def refer(p: np.ndarray) -> np.ndarray:
        cal = softmax(np.log(np.clip(np.asarray(p, dtype=np.float64)[canon], 1e-300, None)), point.temperature)
        return cal[:, mel] >= point.threshold

    return int((refer(probs) != refer(ref_probs))[positives].sum())


def _term(name: str, value: float | None, limit: float | None, ok: bool | None, rule: str) -> dict[str, Any]:
    judged = limit is not None and value is not None
    return {"term": name, "value": value, "limit": limit, "rule": rule, "judged": judged,
            "ok": bool(ok) if judged else None}


def judge(row: dict[str, Any], reference: dict[str, Any], budget: Budget) -> list[dict[str, Any]]:
    """Every budget term for one INT8 candidate `row` (a `sensitivity.compare` dict) against FP32 `reference`.

    Terms whose limit is None, or whose value cannot be computed (no MEL class,
    no operating point), are reported with `judged: False`.
    """
    agree = row.get("top1_agreement")
    if row.get("acc_drop_points") is not None:
        d_acc = -float(row["acc_drop_points"])
    else:
        d_acc = None if row.get("accuracy") is None else 100.0 * (row["accuracy"] - reference["accuracy"])
    acc_term = None if d_acc is None else (abs(d_acc) if budget.acc_two_sided else -d_acc)
    d_mel = delta(row.get("mel_auc"), reference.get("mel_auc"))
    d_mean = delta(row.get("mean_auc"), reference.get("mean_auc"))
    rec, rec_ref = row.get("mel_recall"), reference.get("mel_recall")
    d_rec = delta(rec, rec_ref)
    lim = budget.min_agreement
    terms = [
        _term("top1_agreement", agree, lim, lim is not None and agree is not None and agree >= lim, ">="),
        _term("abs_delta_mel_auc", None if d_mel is None else abs(d_mel), budget.max_mel_auc_delta,
              d_mel is not None and budget.max_mel_auc_delta is not None and abs(d_mel) <= budget.max_mel_auc_delta,
              "<="),
        _term("abs_delta_acc_points" if budget.acc_two_sided else "acc_drop_points", acc_term,
              budget.max_acc_delta_points,
              acc_term is not None and budget.max_acc_delta_points is not None
              and acc_term <= budget.max_acc_delta_points, "<="),
        _term("abs_delta_mean_auc", None if d_mean is None else abs(d_mean), budget.max_mean_auc_delta,
              d_mean is not None and budget.max_mean_auc_delta is not None
              and abs(d_mean) <= budget.max_mean_auc_delta, "<="),
        _term("delta_mel_recall", d_rec, 0.0 if budget.mel_recall_not_lower else None,
              d_rec is not None and d_rec >= 0.0, ">="),
        _term("mel_referrals_changed", row.get("mel_referrals_changed"), budget.max_mel_referrals_changed,
              row.get("mel_referrals_changed") is not None and budget.max_mel_referrals_changed is not None
              and row["mel_referrals_changed"] <= budget.max_mel_referrals_changed, "<="),
    ]
    if not budget.mel_recall_not_lower:  # the old view-level term: kept readable in old reports only
        terms = [t for t in terms if t["term"] != "delta_mel_recall"]
    return terms


def met(terms: list[dict[str, Any]]) -> bool:
    """True when every judged term holds (a budget with no judged term is met)."""
    return all(t["ok"] for t in terms if t["judged"])


def failed_terms(terms: list[dict[str, Any]]) -> list[str]:
    return [t["term"] for t in terms if t["judged"] and not t["ok"]]


def describe(terms: list[dict[str, Any]]) -> str:
    """One line per term for messages and reports: 'top1_agreement 0.9733 (>= 0.99): FAILED'."""
    out = []
    for t in terms:
        value = "–" if t["value"] is None else f"{t['value']:.4f}"
        if not t["judged"]:
            state = "not judged"
        else:
            state = "ok" if t["ok"] else "FAILED"
        limit = "" if t["limit"] is None else f" ({t['rule']} {t['limit']:g})"
        out.append(f"{t['term']} {value}{limit}: {state}")
    return "\n".join(out)
