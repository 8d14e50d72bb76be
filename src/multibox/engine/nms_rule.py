"""The localizer's NMS threshold from the training boxes (``model.nms_iou`` None).

§4 prunes the localizer's boxes by non-maximum suppression at a Jaccard overlap of 0.5 (0.4 on
ILSVRC, §4.4.1): right for photos whose objects overlap each other that much (people in a crowd). Where
the objects never do (tree crowns, cells: trees-dev's crowns overlap their nearest neighbour at IoU
0.17 at most), 0.5 keeps several boxes on one object, and at 100 boxes they crowd out the next objects.
The threshold is therefore set from how much the training objects overlap each other, plus what two
right boxes of two such objects may overlap beyond that, between a floor and the paper's 0.5
(docs/quality.md measures it).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from multibox.config import Config
from multibox.data import DetectionDataset

PAPER_NMS_IOU = 0.5  # §4.1: "a Jaccard similarity threshold of 0.5", the ceiling
NMS_FLOOR = 0.3  # measured on trees-dev: 0.25 cut the same photo's crowns at 100 boxes (76.0 % against 80.9 %)
# Two adjacent objects (IoU 0) whose boxes are each off by a sixth of the side toward the other (IoU 0.71
# with their own object, a right box) overlap each other at IoU 0.2: NMS must keep both.
NMS_MARGIN = 0.2
OVERLAP_QUANTILE = 99  # percent of the objects whose nearest-neighbour overlap the threshold covers
NMS_STEP = 0.05  # the threshold is rounded to this (a readable config)


def nearest_overlaps(dataset: DetectionDataset) -> np.ndarray:
    """float64[N]: for each training object that shares its image with another, its largest IoU with
    one of them (ignored objects count as neighbours: they are objects too)."""
    found = []
    for r in dataset.records:
        if len(r.boxes) < 2:
            continue
        boxes = torch.as_tensor(r.boxes, dtype=torch.float64)
        iou = box_iou(boxes, boxes).fill_diagonal_(0)  # [M, M]
        found.append(iou.max(dim=1).values[torch.as_tensor(~r.ignore)].numpy())
    return np.concatenate(found) if found else np.zeros(0)


def auto_nms_iou(dataset: DetectionDataset) -> float:
    """The NMS threshold for ``dataset`` (module docstring): the OVERLAP_QUANTILE-th percentile of the
    objects' nearest-neighbour IoU plus NMS_MARGIN, rounded to NMS_STEP, within [NMS_FLOOR, 0.5]; the
    paper's 0.5 when no image holds two objects (nothing says how close they come)."""
    overlaps = nearest_overlaps(dataset)
    if not len(overlaps):
        return PAPER_NMS_IOU
    wanted = np.percentile(overlaps, OVERLAP_QUANTILE) + NMS_MARGIN
    return float(np.clip(round(wanted / NMS_STEP) * NMS_STEP, NMS_FLOOR, PAPER_NMS_IOU).round(2))


def configured_nms_iou(cfg: Config) -> float:
    """The NMS threshold of a model trained with ``cfg``: model.nms_iou (resolved from the data when it
    trained); the paper's 0.5 for a config from before the field (or one never resolved)."""
    return PAPER_NMS_IOU if cfg.model.nms_iou is None else float(cfg.model.nms_iou)
