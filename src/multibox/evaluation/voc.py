"""PASCAL VOC average precision per class (the paper's Table 1) and class-agnostic PR (Fig. 5).

Matching follows the VOC devkit's ``VOCevaldet.m``:

* Per class, detections of all images are ranked by descending score (a stable sort: equal scores
  keep image order, then input order, like MATLAB's ``sort``).
* Each detection is compared with the ground truths of its class in its image and picks the one of
  highest IoU (the first, on equal IoUs), already-detected or not. With IoU >= the threshold (0.5;
  the devkit's ``>=``, where some Python ports use ``>``) it is a true positive if that object is
  still free, a false positive if it was taken by a higher-ranked detection (duplicate), and neither
  if the object is ``difficult`` (our ``ignore`` flag). Below the threshold it is a false positive.
* A detection matched to a difficult object is dropped from the ranking: the devkit gives it
  tp = fp = 0, which only repeats the previous point of the curve (or is 0/0 at its start, which
  MATLAB's ``max`` skips), so AP is unchanged.
* precision = TP / (TP + FP), recall = TP / (number of non-difficult objects of the class).

Two AP definitions: ``"11point"`` (VOC2007, the paper's benchmark: mean over recall r in
{0, 0.1, ..., 1} of the best precision at recall >= r; r is k / 10 exactly, so a recall of exactly
0.3 counts for r = 0.3) and ``"area"`` (VOC2010+: area under the monotone precision envelope).

``pixel_plus_one`` (default False) reproduces the devkit's integer-pixel convention, where a box
[x1, y1, x2, y2] covers x2 - x1 + 1 columns: widths, heights, areas and intersections all get +1.
Use it for VOC annotations in their original integer pixel coordinates; leave it off for continuous
coordinates (our library's convention).

Classes with no non-difficult object are left out (their AP would be 0/0); detections whose label
no ground truth has therefore count nowhere. Shapes: N detections, M ground truths, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from multibox.evaluation.metric import DetectionMetric, FlatDetections, class_indices
from multibox.evaluation.overlaps import Pairs, overlapping_pairs, runs

APMethod = Literal["11point", "area"]


def average_precision(precision: np.ndarray, recall: np.ndarray, method: APMethod = "11point") -> float:
    """VOC AP of one ranked PR curve: precision, recall float64 [n] (recall non-decreasing)."""
    if method == "11point":
        return _eleven_point_ap(precision, recall)
    if method == "area":
        return _area_ap(precision, recall)
    raise ValueError(f"unknown AP method {method!r}; use '11point' or 'area'")


def _eleven_point_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Mean over r = 0, 0.1, ..., 1 of max precision at recall >= r (0 where recall never gets there)."""
    best_after = np.maximum.accumulate(np.append(precision, 0.0)[::-1])[::-1]  # [n + 1], 0 past the end
    first = np.searchsorted(recall, np.arange(11) / 10, side="left")
    return float(best_after[first].sum() / 11)


def _area_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision envelope, summed where recall changes (VOC2010+ devkit)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


@dataclass
class RankedOutcomes:
    """Every counted detection, ranked per class: ``cls`` int64 [n] (sorted), ``tp`` bool [n].

    Within a class, rows are in descending-score order; ``tp`` False means false positive.
    ``classes`` int64 [K] are the labels of class indices 0..K-1 (0 alone when pooled), and
    ``num_positives`` int64 [K] counts each class's non-difficult objects (all > 0).
    """

    cls: np.ndarray
    tp: np.ndarray
    classes: np.ndarray
    num_positives: np.ndarray
    scores: np.ndarray | None = None  # float64 [n]: each row's detection score (calibration)


def _best_partner(pairs: Pairs, num_dets: int) -> np.ndarray:
    """int64 [N]: per detection, the paired ground truth of highest IoU (first on ties), or -1."""
    best = np.full(num_dets, -1, dtype=np.int64)
    if len(pairs.det) == 0:
        return best
    starts, seg = runs(pairs.det)
    top = np.maximum.reduceat(pairs.iou, starts)[seg]
    # The devkit replaces its running best only on a strictly larger IoU: the first maximum wins.
    first = np.minimum.reduceat(np.where(pairs.iou == top, pairs.gt, np.iinfo(np.int64).max), starts)
    best[pairs.det[starts]] = first
    return best


def _first_claims(partner: np.ndarray, position: np.ndarray) -> np.ndarray:
    """bool [n]: whether each claim on ``partner`` [n] is the best-ranked (lowest ``position``) one."""
    order = np.lexsort((position, partner))
    first = np.ones(len(order), dtype=bool)
    first[1:] = partner[order][1:] != partner[order][:-1]
    out = np.zeros(len(order), dtype=bool)
    out[order] = first
    return out


def _plus_one(boxes: np.ndarray) -> np.ndarray:
    """Integer-pixel boxes as continuous ones: x2 + 1, y2 + 1 (the devkit's inclusive end pixel)."""
    return boxes + np.array([0.0, 0.0, 1.0, 1.0])


def rank_outcomes(flat: FlatDetections, iou_threshold: float = 0.5, pixel_plus_one: bool = False,
                  class_aware: bool = True) -> RankedOutcomes:
    """Match as ``VOCevaldet.m`` does; ``class_aware=False`` pools every label into one class."""
    det_labels = flat.det_labels if class_aware else np.zeros_like(flat.det_labels)
    gt_labels = flat.gt_labels if class_aware else np.zeros_like(flat.gt_labels)
    classes = np.unique(gt_labels[~flat.gt_ignore])
    (det_cls, det_ok), (gt_cls, gt_ok) = class_indices(det_labels, classes), class_indices(gt_labels, classes)
    partner = _best_partners(flat, det_cls, det_ok, gt_cls, gt_ok, iou_threshold, pixel_plus_one)
    num_positives = np.bincount(gt_cls[gt_ok & ~flat.gt_ignore], minlength=len(classes))
    return _outcomes(flat, det_cls, det_ok, partner, classes, num_positives)


def _best_partners(flat: FlatDetections, det_cls: np.ndarray, det_ok: np.ndarray, gt_cls: np.ndarray,
                   gt_ok: np.ndarray, iou_threshold: float, pixel_plus_one: bool) -> np.ndarray:
    """int64 [N]: each detection's best ground truth of its (image, class) at IoU >= threshold, or -1.

    Detections and ground truths of unknown classes (``*_ok`` False) take part in no pair.
    """
    det_boxes, gt_boxes = (_plus_one(b) if pixel_plus_one else b for b in (flat.det_boxes, flat.gt_boxes))
    k = int(gt_cls.max(initial=0)) + 1
    gt_group = np.where(gt_ok, flat.gt_image * k + gt_cls, -1)
    gt_order = np.argsort(gt_group, kind="stable")  # groups sorted, input order kept within
    det_group = np.where(det_ok, flat.det_image * k + det_cls, -2)
    pairs = overlapping_pairs(det_boxes, det_group, gt_boxes[gt_order], gt_group[gt_order], iou_threshold)
    partner = _best_partner(pairs, len(det_boxes))
    found = partner >= 0
    partner[found] = gt_order[partner[found]]  # back to flat ground-truth indices
    return partner


def _outcomes(flat: FlatDetections, det_cls: np.ndarray, det_ok: np.ndarray, partner: np.ndarray,
              classes: np.ndarray, num_positives: np.ndarray) -> RankedOutcomes:
    """Rank the class-matched detections and decide TP / FP / dropped (difficult) for each."""
    idx = np.flatnonzero(det_ok)
    idx = idx[np.lexsort((-flat.det_scores[idx], det_cls[idx]))]  # stable: image, input order on ties
    partner = partner[idx]
    difficult = partner >= 0
    difficult[difficult] = flat.gt_ignore[partner[difficult]]
    idx, partner = idx[~difficult], partner[~difficult]
    tp = partner >= 0
    tp[tp] = _first_claims(partner[tp], np.flatnonzero(tp))  # a later claim is a duplicate: FP
    return RankedOutcomes(det_cls[idx], tp, classes, num_positives, flat.det_scores[idx])


def pr_curves(outcomes: RankedOutcomes) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class k (list index), the ranked (precision [n_k], recall [n_k]) float64 arrays."""
    counts = np.bincount(outcomes.cls, minlength=len(outcomes.num_positives))
    curves = []
    for tp, npos in zip(np.split(outcomes.tp, np.cumsum(counts)[:-1]), outcomes.num_positives):
        tp_sum = np.cumsum(tp, dtype=np.float64)
        fp_sum = np.cumsum(~tp, dtype=np.float64)
        curves.append((tp_sum / (tp_sum + fp_sum), tp_sum / npos))
    return curves


class VOCMetric(DetectionMetric):
    """Per-class VOC AP and mAP; ``ignore`` ground truths are VOC ``difficult`` objects.

    :meth:`compute` returns ``{"mAP": float, "ap": {class_index: float},
    "pr": {class_index: (precision, recall)}}`` (numpy float64 arrays, one point per counted
    detection in ranking order), over the classes that have non-difficult objects.
    """

    def __init__(self, iou_threshold: float = 0.5, ap_method: APMethod = "11point",
                 pixel_plus_one: bool = False) -> None:
        average_precision(np.zeros(0), np.zeros(0), ap_method)  # reject an unknown method now
        self.iou_threshold, self.ap_method, self.pixel_plus_one = iou_threshold, ap_method, pixel_plus_one
        super().__init__()

    def compute(self) -> dict:
        outcomes = rank_outcomes(self.flat(), self.iou_threshold, self.pixel_plus_one)
        classes, curves = outcomes.classes.tolist(), pr_curves(outcomes)
        ap = {c: average_precision(p, r, self.ap_method) for c, (p, r) in zip(classes, curves)}
        mean = float(np.mean(list(ap.values()))) if ap else float("nan")
        return {"mAP": mean, "ap": ap, "pr": dict(zip(classes, curves))}


class ClassAgnosticPR(DetectionMetric):
    """Precision-recall of detections as one "object" class, labels ignored (the paper's Fig. 5).

    A detection is a true positive when it overlaps a still-free object of any class by IoU >=
    ``iou_threshold``; matching and ``difficult`` handling are those of :class:`VOCMetric`.
    :meth:`compute` returns ``{"AP": float, "precision": [float], "recall": [float]}``
    (AP is NaN without any non-difficult object).
    """

    needs_labels = False

    def __init__(self, iou_threshold: float = 0.5, ap_method: APMethod = "11point",
                 pixel_plus_one: bool = False) -> None:
        average_precision(np.zeros(0), np.zeros(0), ap_method)
        self.iou_threshold, self.ap_method, self.pixel_plus_one = iou_threshold, ap_method, pixel_plus_one
        super().__init__()

    def compute(self) -> dict:
        outcomes = rank_outcomes(self.flat(), self.iou_threshold, self.pixel_plus_one, class_aware=False)
        if len(outcomes.num_positives) == 0:
            return {"AP": float("nan"), "precision": [], "recall": []}
        precision, recall = pr_curves(outcomes)[0]
        ap = average_precision(precision, recall, self.ap_method)
        return {"AP": ap, "precision": precision.tolist(), "recall": recall.tolist()}
