"""COCO-style box AP/AR (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l), equal to pycocotools' COCOeval.

The numbers are those of ``COCOeval(iouType="bbox")`` with default parameters (IoU 0.50:0.05:0.95,
101 recall points, maxDets 1/10/100, area ranges all/small/medium/large) to within floating-point
summation order, class-aware (``useCats=1``) or class-agnostic (``useCats=0``: every class pooled, as
in proposal scoring). The semantics reproduced, and where they come from in COCOeval:

* Detections of one (image, class) -- or one image, class-agnostic -- are ranked by a stable sort on
  descending score and cut to the 100 best; class-agnostic ties keep COCOeval's order (by class,
  then input order), since it concatenates the per-class lists before sorting.
* Greedy matching per (image, class, area range, IoU threshold), in score order: a detection takes
  the highest-IoU still-free ground truth with IoU >= threshold, preferring regular ground truths and
  falling back to ignored ones (crowd, or outside the area range) only when no regular one
  qualifies; among equal IoUs the later ground truth wins. Crowd regions are never used up and
  overlap is measured as intersection / area(detection).
* A detection matched to an ignored ground truth, or unmatched and outside the area range, is
  neither a true nor a false positive.
* Per class and area range, all images' detections are ranked by a stable sort on descending score
  (ties keep image order), precision is made monotone and read at the first rank reaching each
  recall threshold; classes without regular ground truths are -1 and left out of the means.

Areas are box areas w * h of the pixel xyxy boxes (our records have no segmentation; COCOeval reads
an annotation's ``area`` field, which for COCO ground truth is the mask area).

How it is made fast (no per-box or per-image Python loops):

* Only same-(image, class) pairs are enumerated, pairs whose area ratio rules out IoU >= 0.5 (the
  lowest threshold) are dropped before one batched IoU call, and only pairs reaching 0.5 are kept
  (:mod:`.overlaps`).
* Greedy matching loops over detection *ranks* (at most 100 steps); each step resolves the detection
  of that rank in every image and class for all 4 area ranges x 10 thresholds as one array op.
* Accumulation never materialises per-detection precision: between two true positives precision can
  only fall, so the monotone envelope at a recall threshold is the maximum over the true positives
  from that point on. Only true positives (and, for their false-positive counts, one running count of
  in-range detections per area range) are touched.

Shapes: N detections, M ground truths, K classes, A = 4 area ranges, T = 10 IoU thresholds,
R = 101 recall thresholds, D = 3 maxDets settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multibox.evaluation.coco_matching import (AREA_RANGES, IOU_THRESHOLDS, MAX_DETS, RECALL_THRESHOLDS, Matches,
                                               RankedDetections, greedy_match, outside_area_ranges, rank_detections,
                                               sort_ground_truths)
from multibox.evaluation.metric import DetectionMetric, FlatDetections, class_indices
from multibox.evaluation.overlaps import runs

STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _segment_cumsum(values: np.ndarray, starts: np.ndarray, seg: np.ndarray, inclusive: bool) -> np.ndarray:
    """Running sum of int ``values`` [P] restarting at each segment (``starts`` [S], ``seg`` [P])."""
    total = np.cumsum(values)
    before = total - values
    local = (total if inclusive else before) - before[starts][seg]
    return local


def _recall_counts(npig: np.ndarray) -> np.ndarray:
    """int64 [K, A, R]: fewest true positives c with c / npig >= each recall threshold.

    Computed with the very division COCOeval uses for recall (tp / npig in float64), so the rank
    where recall first reaches a threshold is found on exact integers instead of rounded recalls.
    """
    n = np.maximum(npig, 1)[..., None].astype(np.float64)
    thr = RECALL_THRESHOLDS
    c = np.ceil(thr * n)
    c = np.where((c >= 1) & ((c - 1) / n >= thr), c - 1, c)
    c = np.where(c / n < thr, c + 1, c)
    return c.astype(np.int64)


@dataclass
class _Events:
    """Matched detections sorted by (lane = area range * T + threshold, position).

    ``pos`` is the detection's position in accumulation order (class, descending score, image,
    rank); ``lane_cls`` = lane * K + class names the (area range, threshold, class) curve. All [E].
    """

    area: np.ndarray
    pos: np.ndarray
    lane_cls: np.ndarray
    true_positive: np.ndarray  # matched to a regular ground truth
    in_range: np.ndarray  # the detection's own area lies in the area range

    def subset(self, keep: np.ndarray, new_pos: np.ndarray) -> _Events:
        """The events with ``keep`` [E], positions renumbered by ``new_pos`` (order is kept)."""
        return _Events(self.area[keep], new_pos[self.pos[keep]], self.lane_cls[keep],
                       self.true_positive[keep], self.in_range[keep])


def _sorted_events(matches: Matches, pos: np.ndarray, det_cls: np.ndarray, det_out: np.ndarray,
                   num_classes: int) -> _Events:
    """:class:`_Events` from matches; ``pos`` [N] is each detection's accumulation position."""
    lane = matches.area * len(IOU_THRESHOLDS) + matches.thr
    order = np.argsort(lane * len(pos) + pos[matches.det])  # keys are unique: one match per lane
    a, d, lane = matches.area[order], matches.det[order], lane[order]
    return _Events(a, pos[d], lane * num_classes + det_cls[d], ~matches.ignored[order], ~det_out[a, d])


def _true_positive_precision(ev: _Events, in_range_before: np.ndarray, cls_start: np.ndarray,
                             num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(precision at each true positive [E'], curve (lane * K + class) of each [E']).

    Precision there is tp / (fp + tp + eps) exactly as COCOeval computes it; fp counts in-range
    detections ranked earlier in the curve minus those of them that were matched.
    """
    starts, seg = runs(ev.lane_cls)
    tp = _segment_cumsum(ev.true_positive.astype(np.int64), starts, seg, inclusive=True)
    matched_before = _segment_cumsum(ev.in_range.astype(np.int64), starts, seg, inclusive=False)
    first = cls_start[ev.lane_cls % num_classes]
    fp = in_range_before[ev.area, ev.pos] - in_range_before[ev.area, first] - matched_before
    tp, fp = tp.astype(np.float64), fp.astype(np.float64)
    precision = tp / (fp + tp + np.spacing(1))
    return precision[ev.true_positive], ev.lane_cls[ev.true_positive]


def _interpolated_precision(precision: np.ndarray, curve: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """float64 [L, K, R]: max precision over true positives numbered >= ``counts`` [L, K, R].

    ``precision`` [E'] at the true positives, sorted by ``curve`` [E'] (= lane * K + class) and rank.
    A threshold no curve reaches gets 0, as in COCOeval.
    """
    num = np.bincount(curve, minlength=counts.shape[0] * counts.shape[1]).reshape(counts.shape[:2])
    start = np.cumsum(num) - num.ravel()
    start, end = start.reshape(num.shape)[..., None], (start + num.ravel()).reshape(num.shape)[..., None]
    # Range r of a curve runs from true positive number counts[r] to that of counts[r + 1]: one
    # reduceat gives each range's max, a reversed running max then gives the envelope.
    # Recall 0 is reached at the first rank, so its envelope is the max over every true positive.
    number = np.maximum(counts, 1)
    first = np.minimum(start + number - 1, end)
    ranges = np.maximum.reduceat(np.append(precision, 0.0), first.ravel()).reshape(counts.shape)
    ranges = np.where(number <= num[..., None], ranges, 0.0)
    return np.maximum.accumulate(ranges[..., ::-1], axis=-1)[..., ::-1]


@dataclass
class _Ranking:
    """Detections in accumulation order (per class, descending score): ``cls``, ``rank`` [N],
    ``outside`` bool [A, N] (outside area range a), and the matches as sorted :class:`_Events`."""

    cls: np.ndarray
    rank: np.ndarray
    outside: np.ndarray
    events: _Events


def _rank_for_accumulation(dets: RankedDetections, matches: Matches, num_classes: int) -> _Ranking:
    """Per class, all images' detections by descending score, ties in (image, rank) order.

    That is COCOeval's stable sort of the per-image lists concatenated in image order; ``dets`` is
    already in (image, rank) order within a class, and lexsort is stable.
    """
    order = np.lexsort((-dets.scores, dets.cls))
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    outside = outside_area_ranges(dets.area)
    events = _sorted_events(matches, pos, dets.cls, outside, num_classes)
    return _Ranking(dets.cls[order], dets.rank[order], outside[:, order], events)


def _accumulate_max_det(ranking: _Ranking, npig: np.ndarray, max_det: int) -> tuple[np.ndarray, np.ndarray]:
    """(precision [T, R, K, A], recall [T, K, A]) for one maxDets setting; -1 where npig is 0."""
    num_classes, taking = npig.shape[0], ranking.rank < max_det
    events = ranking.events.subset(taking[ranking.events.pos], np.cumsum(taking) - 1)
    cls_start = np.searchsorted(ranking.cls[taking], np.arange(num_classes))
    in_range_before = np.zeros((len(AREA_RANGES), int(taking.sum()) + 1), dtype=np.int64)
    np.cumsum(~ranking.outside[:, taking], axis=1, out=in_range_before[:, 1:])
    precision, curve = _true_positive_precision(events, in_range_before, cls_start, num_classes)
    return _curves(precision, curve, npig)


def _curves(precision: np.ndarray, curve: np.ndarray, npig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's (precision [T, R, K, A], recall [T, K, A]) from true positives' precisions.

    ``precision`` [E'] and ``curve`` [E'] as :func:`_true_positive_precision` returns them.
    """
    (num_classes, num_a), num_t = npig.shape, len(IOU_THRESHOLDS)
    counts = np.repeat(_recall_counts(npig).transpose(1, 0, 2), num_t, axis=0)  # [L, K, R]
    q = _interpolated_precision(precision, curve, counts)
    npig_lane = np.repeat(npig.T, num_t, axis=0)  # [L, K]
    tps = np.bincount(curve, minlength=npig_lane.size).reshape(npig_lane.shape)
    recall = np.where(npig_lane > 0, tps / np.maximum(npig_lane, 1), -1.0)
    q = np.where(npig_lane[..., None] > 0, q, -1.0)
    return (q.reshape(num_a, num_t, num_classes, len(RECALL_THRESHOLDS)).transpose(1, 3, 2, 0),
            recall.reshape(num_a, num_t, num_classes).transpose(1, 2, 0))


def _classes(flat: FlatDetections, class_aware: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(det class [N], det kept [N], gt class [M], K): labels mapped to 0..K-1 (all 0 if agnostic).

    Class-aware, the classes are those with ground truth; a detection of any other class could only
    score against a class COCOeval reports as -1 and leaves out, so it is dropped up front.
    """
    if not class_aware:
        return np.zeros_like(flat.det_labels), np.ones(len(flat.det_labels), bool), np.zeros_like(flat.gt_labels), 1
    classes = np.unique(flat.gt_labels)
    det_cls, keep = class_indices(flat.det_labels, classes)
    return det_cls, keep, np.searchsorted(classes, flat.gt_labels), len(classes)


def coco_precision_recall(flat: FlatDetections, class_aware: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's ``eval["precision"]`` [T, R, K, A, D] and ``eval["recall"]`` [T, K, A, D].

    K runs over the ground truth's distinct labels in increasing order (1 class when agnostic).
    """
    det_cls, keep, gt_cls, num_classes = _classes(flat, class_aware)
    dets = rank_detections(flat, det_cls, keep, labels_break_ties=not class_aware)
    gts = sort_ground_truths(flat, gt_cls)
    matches = greedy_match(dets, gts, num_classes)
    npig = np.stack([np.bincount(gts.cls[~ig], minlength=num_classes) for ig in gts.ignored], axis=1)  # [K, A]
    ranking = _rank_for_accumulation(dets, matches, num_classes)
    per_max_det = [_accumulate_max_det(ranking, npig, m) for m in MAX_DETS]
    precision, recall = zip(*per_max_det)
    return np.stack(precision, axis=-1), np.stack(recall, axis=-1)


def _mean_defined(values: np.ndarray) -> float:
    """Mean over entries > -1, or -1 when there are none (COCOeval's summarize rule)."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The 12 standard numbers (keys :data:`STAT_KEYS`) from :func:`coco_precision_recall`'s arrays."""
    every = np.arange(len(IOU_THRESHOLDS))
    at50, at75 = (np.flatnonzero(IOU_THRESHOLDS == v) for v in (0.5, 0.75))
    last = len(MAX_DETS) - 1

    def ap(thr: np.ndarray = every, area: int = 0) -> float:
        return _mean_defined(precision[thr][:, :, :, area, last])

    def ar(max_det: int = last, area: int = 0) -> float:
        return _mean_defined(recall[:, :, area, max_det])

    values = [ap(), ap(at50), ap(at75), ap(area=1), ap(area=2), ap(area=3),
              ar(0), ar(1), ar(2), ar(area=1), ar(area=2), ar(area=3)]
    return dict(zip(STAT_KEYS, values))


class COCOMetric(DetectionMetric):
    """COCO box AP/AR over pixel xyxy boxes; ``ignore`` ground truths are crowd regions.

    ``class_aware=False`` pools every class into one (COCOeval's ``useCats=0``); predictions then
    need no ``labels`` (when given they only order equal scores, as COCOeval does).
    :meth:`compute` returns the :data:`STAT_KEYS` as floats, -1 where undefined.
    """

    def __init__(self, class_aware: bool = True) -> None:
        self.class_aware = class_aware
        self.needs_labels = class_aware
        super().__init__()

    def compute(self) -> dict[str, float]:
        return summarize(*coco_precision_recall(self.flat(), self.class_aware))
