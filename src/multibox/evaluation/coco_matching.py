"""COCO evaluation, part one: the constants of COCOeval and the greedy matching of detections to
ground truth for every area range and IoU threshold at once (:mod:`multibox.evaluation.coco` holds the
accumulation and the metric; the module docstring there explains the design).

Shapes: N detections, M ground truths, A = 4 area ranges, T = 10 IoU thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multibox.evaluation.metric import FlatDetections
from multibox.evaluation.overlaps import overlapping_pairs, runs

#: T IoU thresholds; linspace (not arange) so that 0.75 is exactly the double 0.75, as in COCOeval.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: R recall thresholds at which precision is read (101-point interpolation).
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
#: D per-image (per-class when class-aware) detection limits.
MAX_DETS = (1, 10, 100)
#: A inclusive [low, high] box-area ranges: all, small, medium, large.
AREA_RANGES = np.array([[0.0, 1e5**2], [0.0, 32.0**2], [32.0**2, 96.0**2], [96.0**2, 1e5**2]])


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """w * h of pixel xyxy boxes [K, 4] -> [K] (the area COCOeval's area ranges are applied to)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def outside_area_ranges(areas: np.ndarray) -> np.ndarray:
    """bool [A, K]: the box lies outside area range a (bounds inclusive, as in COCOeval)."""
    return (areas[None, :] < AREA_RANGES[:, :1]) | (areas[None, :] > AREA_RANGES[:, 1:])


@dataclass
class RankedDetections:
    """Detections that take part, grouped by (image, class) and ranked within the group.

    Every array is [N]; ``rank`` is the 0-based position in the group's descending-score order.
    """

    boxes: np.ndarray
    scores: np.ndarray
    image: np.ndarray
    cls: np.ndarray
    rank: np.ndarray
    area: np.ndarray


@dataclass
class SortedGroundTruths:
    """Ground truths sorted by (image, label, input order): the order COCOeval breaks IoU ties in.

    ``boxes`` [M, 4]; ``image``, ``cls``, ``crowd`` [M].
    """

    boxes: np.ndarray
    image: np.ndarray
    cls: np.ndarray
    crowd: np.ndarray
    ignored: np.ndarray  # bool [A, M]: crowd, or outside area range a


def group_ranks(sorted_keys: np.ndarray) -> np.ndarray:
    """0-based rank of each row within its run of equal keys; ``sorted_keys`` int64 [K] grouped."""
    starts, run = runs(sorted_keys)
    return np.arange(len(sorted_keys)) - starts[run]


def rank_detections(flat: FlatDetections, det_cls: np.ndarray, keep: np.ndarray,
                     labels_break_ties: bool) -> RankedDetections:
    """Sort the ``keep`` detections by (image, class, -score) stably; keep each group's top 100."""
    idx = np.flatnonzero(keep)
    cls, score = det_cls[idx], flat.det_scores[idx]
    group = flat.det_image[idx] * (int(cls.max(initial=0)) + 1) + cls  # (image, class) as one key
    if labels_break_ties:  # class-agnostic COCOeval ranks a list it built class by class
        order = np.lexsort((flat.det_labels[idx], -score, group))
    else:
        order = np.lexsort((-score, group))
    idx, cls = idx[order], cls[order]
    rank = group_ranks(group[order])
    top = rank < MAX_DETS[-1]
    idx = idx[top]
    boxes = flat.det_boxes[idx]
    return RankedDetections(boxes, flat.det_scores[idx], flat.det_image[idx], cls[top], rank[top], box_areas(boxes))


def sort_ground_truths(flat: FlatDetections, gt_cls: np.ndarray) -> SortedGroundTruths:
    """Ground truths in (image, label, input) order, with per-area-range ignore flags."""
    order = np.lexsort((flat.gt_labels, flat.gt_image))
    boxes, crowd = flat.gt_boxes[order], flat.gt_ignore[order]
    ignored = crowd[None, :] | outside_area_ranges(box_areas(boxes))
    return SortedGroundTruths(boxes, flat.gt_image[order], gt_cls[order], crowd, ignored)


@dataclass
class Matches:
    """Every (area range, threshold, detection) that greedy matching paired with a ground truth.

    All arrays are [E]; ``ignored`` says the partner was an ignored ground truth.
    """

    area: np.ndarray
    thr: np.ndarray
    det: np.ndarray
    ignored: np.ndarray

    @staticmethod
    def concat(parts: list[Matches]) -> Matches:
        """All ``parts`` as one :class:`Matches`, in order."""
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return Matches(empty, empty, empty, np.zeros(0, dtype=bool))
        return Matches(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("area", "thr", "det", "ignored")))


class GreedyMatcher:
    """COCOeval's greedy matching, for one detection rank at a time across all images and classes.

    State: ``taken`` bool [A, T, M], whether a ground truth is already matched at (area range, IoU
    threshold). Crowd regions stay available however often they are matched.
    """

    def __init__(self, gts: SortedGroundTruths) -> None:
        self.ignored = gts.ignored  # [A, M]
        self.crowd = gts.crowd  # [M]
        # A match needs IoU >= threshold; COCOeval caps the threshold just below 1.
        self.thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, :, None]  # [1, T, 1]
        self.taken = np.zeros((len(AREA_RANGES), len(IOU_THRESHOLDS), len(gts.crowd)), dtype=bool)

    def step(self, det: np.ndarray, gt: np.ndarray, iou: np.ndarray) -> Matches:
        """Match the P pairs (det, gt, iou) [P] of detections of one rank, sorted by det then gt."""
        starts, seg = runs(det)
        free = ~self.taken[:, :, gt] | self.crowd[gt]  # [A, T, P]
        candidate = free & (iou >= self.thr)
        regular = candidate & ~self.ignored[:, None, gt]
        # Fall back to ignored ground truths only where no regular one qualifies.
        has_regular = np.logical_or.reduceat(regular, starts, axis=2)[..., seg]
        eligible = regular | (candidate & ~has_regular)
        score = np.where(eligible, iou, -1.0)
        best = np.maximum.reduceat(score, starts, axis=2)[..., seg]
        # Among equal best IoUs the later ground truth wins (COCOeval's ">=" scan).
        choice = np.maximum.reduceat(np.where(eligible & (score == best), gt, -1), starts, axis=2)
        a, t, s = np.nonzero(choice >= 0)
        chosen = choice[a, t, s]
        self.taken[a, t, chosen] = True
        return Matches(a, t, det[starts[s]], self.ignored[a, chosen])


def greedy_match(dets: RankedDetections, gts: SortedGroundTruths, num_classes: int) -> Matches:
    """Run :class:`GreedyMatcher` over detection ranks 0, 1, ... on all pairs with IoU >= 0.5."""
    # Pairs live within an (image, class) group; class-agnostic runs have a single class.
    pairs = overlapping_pairs(dets.boxes, dets.image * num_classes + dets.cls, gts.boxes,
                              gts.image * num_classes + gts.cls, float(IOU_THRESHOLDS.min()), gts.crowd)
    order = np.argsort(dets.rank[pairs.det], kind="stable")  # keeps (det, gt) order within a rank
    det, gt, iou = pairs.det[order], pairs.gt[order], pairs.iou[order]
    bounds = np.searchsorted(dets.rank[det], np.arange(MAX_DETS[-1] + 1))
    matcher = GreedyMatcher(gts)
    ranks = zip(bounds[:-1], bounds[1:])
    return Matches.concat([matcher.step(det[lo:hi], gt[lo:hi], iou[lo:hi]) for lo, hi in ranks if hi > lo])
