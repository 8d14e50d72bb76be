"""Do the scores mean what they say? Reliability of a localizer's confidences, and the fit that fixes it.

A detection is *right* when it is a true positive of the class-agnostic PR curve (IoU >= 0.5 with an
object no better-scored box has claimed: VOC's rule, so a duplicate is wrong). Over the top
``max_det`` boxes of each image:

* expected calibration error (ECE): boxes binned by score (10 equal bins), the mean over bins of
  |share right - mean score|, weighted by the bin's share of boxes;
* precision at score thresholds: the share right among boxes scored >= t (what ``--conf t`` keeps).

:func:`fit_platt` fits z -> a z + b (a > 0) to the right / wrong outcomes of validation boxes by
maximum likelihood (scipy), so a score of 0.5 means about half such boxes are right;
:class:`multibox.modeling.calibration.ScoreCalibration` applies it inside the model.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize
from torch import Tensor

from multibox.evaluation.metric import DetectionMetric
from multibox.evaluation.voc import rank_outcomes

BINS = 10
THRESHOLDS = (0.25, 0.5, 0.75)


class Outcomes(DetectionMetric):
    """Accumulates images; :meth:`compute` gives (scores float64[N], right bool[N]) of every detection."""

    needs_labels = False

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        ranked = rank_outcomes(self.flat(), 0.5, class_aware=False)
        return ranked.scores, ranked.tp


def top_detections(detections: list[dict[str, Tensor]], max_det: int) -> list[dict[str, Tensor]]:
    """Each image's ``max_det`` best-scored detections (they come sorted by score)."""
    return [{"boxes": d["boxes"][:max_det], "scores": d["scores"][:max_det]} for d in detections]


def outcomes(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], max_det: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(scores, right) of the top ``max_det`` detections per image against ``targets`` (pixel boxes)."""
    metric = Outcomes()
    metric.update(top_detections(detections, max_det), targets)  # class-agnostic: labels pooled
    return metric.compute()


def expected_calibration_error(scores: np.ndarray, right: np.ndarray, bins: int = BINS) -> float:
    """ECE over ``bins`` equal score bins; NaN without detections."""
    if not len(scores):
        return float("nan")
    which = np.minimum((scores * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, right.astype(np.float64), bins) - np.bincount(which, scores, bins))
    return float(gap.sum() / count.sum())


def precision_at(scores: np.ndarray, right: np.ndarray, thresholds=THRESHOLDS) -> dict[str, dict]:
    """{"0.25": {"boxes": n, "precision": share right or None}, ...} of the boxes scored >= each threshold."""
    out = {}
    for t in thresholds:
        kept = scores >= t
        n = int(kept.sum())
        out[f"{t:g}"] = {"boxes": n, "precision": float(right[kept].mean()) if n else None}
    return out


def calibration_metrics(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], max_det: int = 100) -> dict:
    """metrics.json's "calibration" entry: ECE and precision at thresholds of the top ``max_det`` boxes."""
    scores, right = outcomes(detections, targets, max_det)
    ece = expected_calibration_error(scores, right)
    return {"max_det": max_det, "ece": None if math.isnan(ece) else ece, "precision_at": precision_at(scores, right)}


def logit(scores: np.ndarray) -> np.ndarray:
    """The logits float64[N] of probabilities ``scores`` (clipped off 0 and 1)."""
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def platt(scores: np.ndarray, scale: float, bias: float) -> np.ndarray:
    """The scores under z -> scale z + bias, as :class:`multibox.modeling.calibration.ScoreCalibration` maps them."""
    return 1 / (1 + np.exp(-(scale * logit(scores) + bias)))


def fit_platt(scores: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(a, b), a > 0, maximizing the likelihood of ``right`` under sigmoid(a logit(score) + b); (1, 0)
    when the outcomes cannot support a fit (no box, or all right, or all wrong)."""
    if not len(scores) or right.all() or not right.any():
        return 1.0, 0.0
    z, y = logit(scores), right.astype(np.float64)

    def nll(params: np.ndarray) -> float:
        t = np.exp(params[0]) * z + params[1]  # a = exp(.) > 0 keeps the ranking
        return float(np.sum(np.logaddexp(0, t) - y * t))

    best = minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000})
    return float(np.exp(best.x[0])), float(best.x[1])
