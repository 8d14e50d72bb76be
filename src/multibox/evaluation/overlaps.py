"""Detection/ground-truth pairs that overlap enough, found for all images at once.

Every metric here only compares a detection with the ground truths of its own *group* -- its image,
or its (image, class) when evaluation is class-aware. With ground truths sorted by group, the
candidates of a detection are one contiguous range, so all same-group pairs are enumerated with
``np.repeat`` arithmetic (no padding, no loop over images), their IoUs are taken in one batched call,
and only pairs above a threshold are returned. Pairs are processed in chunks only to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from multibox.boxes import batched_box_iou

#: Upper bound on the (detection, ground truth) pairs whose boxes are gathered at once.
_CHUNK_PAIRS = 1 << 21


@dataclass
class Pairs:
    """P overlapping (detection, ground truth) pairs, sorted by ``det`` then ``gt``.

    ``det`` int64 [P] and ``gt`` int64 [P] index the detection / ground-truth arrays;
    ``iou`` float64 [P] is their overlap.
    """

    det: np.ndarray
    gt: np.ndarray
    iou: np.ndarray


def runs(sorted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start of each run of equal ids [S], run number of every element [P]) for grouped ids [P].

    Pairs are sorted by detection, so ``runs(pairs.det)`` gives the segments that per-detection
    reductions (``np.maximum.reduceat(values, starts)``) work on.
    """
    new = np.ones(len(sorted_ids), dtype=bool)
    new[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return np.flatnonzero(new), np.cumsum(new) - 1


def crowd_overlap(det: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Intersection over the *detection's* area of paired boxes: Tensor[P, 4] x Tensor[P, 4] -> [P].

    COCO scores a detection against a crowd region by how much of the detection lies inside it (a
    box around one person of a crowd is not penalised for the crowd being larger), so the
    denominator is area(det), not the union; torchvision has no such variant, hence written here.
    """
    lo = torch.maximum(det[:, :2], gt[:, :2])
    hi = torch.minimum(det[:, 2:], gt[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=-1)
    return inter / ((det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1]))


def paired_iou(det: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of row i of det [P, 4] with row i of gt [P, 4] -> [P], via torchvision's box_iou."""
    return batched_box_iou(det[:, None, :], gt[:, None, :])[:, 0, 0]  # P batches of 1 x 1 matrices


def _group_ranges(det_group: np.ndarray, gt_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first gt [N], number of gts [N]) of each detection's group; ``gt_group`` [M] sorted."""
    first = np.searchsorted(gt_group, det_group, side="left")
    return first, np.searchsorted(gt_group, det_group, side="right") - first


def _enumerate(dets: np.ndarray, first: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (det, first[det] + j) for j < count[det], det in ``dets`` [n], sorted by (det, gt)."""
    count = count[dets]
    det = np.repeat(dets, count)
    skip = np.repeat(np.cumsum(count) - count, count)  # pairs before this detection's run
    return det, np.repeat(first[dets], count) + (np.arange(len(det)) - skip)


def _areas(boxes: np.ndarray) -> np.ndarray:
    """w * h of xyxy boxes [K, 4] -> [K]."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _could_reach(det_area: np.ndarray, gt_area: np.ndarray, min_iou: float) -> np.ndarray:
    """bool [P]: pairs whose areas allow IoU >= min_iou, a cheap filter run before the real IoU.

    IoU <= min(area) / max(area) (the intersection is at most the smaller box, the union at least
    the larger), so most pairs are ruled out from two gathered scalars instead of two boxes. The
    1e-9 slack keeps pairs whose rounded IoU could still land on the threshold.
    """
    return np.minimum(det_area, gt_area) >= min_iou * (1 - 1e-9) * np.maximum(det_area, gt_area)


def _chunks(count: np.ndarray) -> list[np.ndarray]:
    """Detections with candidates, split so no chunk enumerates much more than _CHUNK_PAIRS pairs."""
    dets = np.flatnonzero(count)
    ends = np.cumsum(count[dets])
    bounds = np.searchsorted(ends, np.arange(0, ends[-1] if len(ends) else 0, _CHUNK_PAIRS), side="right")
    return np.split(dets, bounds[1:])


def _pairs_with(boxes: tuple[torch.Tensor, torch.Tensor], group: tuple[np.ndarray, np.ndarray],
                gt_subset: np.ndarray, min_iou: float, crowd: bool) -> tuple[np.ndarray, ...]:
    """(det, gt, overlap) [P] of the ground truths ``gt_subset`` (all regular or all crowd)."""
    det_boxes, gt_boxes = boxes[0], boxes[1][torch.from_numpy(gt_subset)]
    det_area, gt_area = _areas(det_boxes.numpy()), _areas(gt_boxes.numpy())
    first, count = _group_ranges(group[0], group[1][gt_subset])
    found = [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))]
    for dets in _chunks(count):
        det, gt = _enumerate(dets, first, count)
        if not crowd:  # a crowd overlap is not bounded by the area ratio
            keep = _could_reach(det_area[det], gt_area[gt], min_iou)
            det, gt = det[keep], gt[keep]
        d, g = det_boxes[torch.from_numpy(det)], gt_boxes[torch.from_numpy(gt)]
        overlap = (crowd_overlap(d, g) if crowd else paired_iou(d, g)).numpy()
        keep = overlap >= min_iou
        found.append((det[keep], gt_subset[gt[keep]], overlap[keep]))
    return tuple(np.concatenate(parts) for parts in zip(*found))


def overlapping_pairs(det_boxes: np.ndarray, det_group: np.ndarray, gt_boxes: np.ndarray, gt_group: np.ndarray,
                      min_iou: float, crowd: np.ndarray | None = None) -> Pairs:
    """Every pair of equal group with overlap >= ``min_iou`` (a NaN overlap, as of two empty boxes, never passes).

    det_boxes float64 [N, 4] and gt_boxes float64 [M, 4] are xyxy; ``det_group`` int64 [N] is any
    order, ``gt_group`` int64 [M] must be sorted. ``crowd`` bool [M] switches those ground truths to
    :func:`crowd_overlap`.
    """
    crowd = np.zeros(len(gt_boxes), dtype=bool) if crowd is None else crowd
    det_boxes, gt_boxes = (np.ascontiguousarray(b, dtype=np.float64) for b in (det_boxes, gt_boxes))
    boxes, group = (torch.from_numpy(det_boxes), torch.from_numpy(gt_boxes)), (det_group, gt_group)
    regular = _pairs_with(boxes, group, np.flatnonzero(~crowd), min_iou, crowd=False)
    crowds = _pairs_with(boxes, group, np.flatnonzero(crowd), min_iou, crowd=True)
    det, gt, iou = (np.concatenate(parts) for parts in zip(regular, crowds))
    order = np.lexsort((gt, det))
    return Pairs(det[order], gt[order], iou[order])
