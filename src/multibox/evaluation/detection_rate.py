"""Detection rate against the number of boxes per image (the paper's Fig. 1).

For each k, the share of ground-truth objects that at least one of the image's top-k boxes hits at
Jaccard >= 0.5 (the PASCAL criterion). One pass computes every k at once: per object we record the
rank of the first box that hits it, and the curve is the cumulative histogram of those ranks.
Objects flagged ``ignore`` are not counted.

:class:`DetectionRateBySize` keeps the same first-hit histogram per object size (COCO's area ranges,
in pixels of the original image), so small objects can be told apart from large ones.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from multibox.boxes import box_iou

REPORT_KS = (1, 5, 10, 25, 50, 100, 200)


class DetectionRate:
    """Accumulates first-hit ranks; ``compute()`` gives the curve for k = 1..max_k.

    update(predictions, targets): predictions are dicts {"boxes": Tensor[N, 4], "scores": Tensor[N]}
    sorted by descending score (as :func:`multibox.inference.postprocess.postprocess` returns them); targets are
    dicts {"boxes": Tensor[M, 4], "ignore": Tensor[M] bool (optional)}, same pixel frame.
    """

    def __init__(self, max_k: int, iou_threshold: float = 0.5) -> None:
        self.max_k, self.iou_threshold = max_k, iou_threshold
        self.reset()

    def reset(self) -> None:
        self.first_hit_hist = np.zeros(self.max_k + 1, dtype=np.int64)  # last bin: never hit within max_k
        self.num_images = 0

    def update(self, predictions: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        for pred, target in zip(predictions, targets, strict=True):  # one IoU matrix per image
            self.num_images += 1
            first, gt = first_hit_ranks(pred, target, self.max_k, self.iou_threshold)
            self._add(first, gt)

    def _add(self, first: Tensor, gt: Tensor) -> None:
        """Count one image's objects: first-hit ranks Tensor[M] (max_k = never) of boxes Tensor[M, 4]."""
        self.first_hit_hist += np.bincount(first.numpy(), minlength=self.max_k + 1)

    @property
    def num_objects(self) -> int:
        return int(self.first_hit_hist.sum())

    def curve(self) -> np.ndarray:
        """float[max_k]: detection rate with the top 1, 2, ..., max_k boxes."""
        return cumulative_rate(self.first_hit_hist)

    def compute(self) -> dict:
        """{"num_images", "num_objects", "detection_rate": {"k": rate for the reported k <= max_k}, "curve"}."""
        curve = self.curve()
        return {
            "num_images": self.num_images,
            "num_objects": self.num_objects,
            "detection_rate": reported_rates(curve),
            "curve": [float(v) for v in curve],
        }


def first_hit_ranks(pred: dict[str, Tensor], target: dict[str, Tensor], max_k: int,
                    iou_threshold: float) -> tuple[Tensor, Tensor]:
    """One image: per counted (not ignored) object, the rank of the first of the top ``max_k`` boxes
    hitting it at IoU >= ``iou_threshold`` (``max_k`` when none does), Tensor[M] int64, and the
    objects' boxes Tensor[M, 4]."""
    gt = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
    ignore = torch.as_tensor(target.get("ignore", torch.zeros(len(gt), dtype=torch.bool)), dtype=torch.bool)
    gt = gt[~ignore]
    boxes = torch.as_tensor(pred["boxes"], dtype=torch.float32).reshape(-1, 4)[:max_k]
    first = torch.full((len(gt),), max_k, dtype=torch.int64)
    if len(gt) and len(boxes):
        hit = box_iou(boxes, gt) >= iou_threshold  # [N, M]
        rank = torch.where(hit, torch.arange(len(boxes))[:, None], max_k)  # [N, M]
        first = rank.min(dim=0).values
    return first, gt


def cumulative_rate(first_hit_hist: np.ndarray) -> np.ndarray:
    """float[max_k] curve from a first-hit histogram int[max_k + 1] (last bin: never hit)."""
    return np.cumsum(first_hit_hist[:-1]) / max(int(first_hit_hist.sum()), 1)


def reported_rates(curve: np.ndarray) -> dict[str, float]:
    """{"k": curve[k - 1]} for the reported k that the curve reaches."""
    return {str(k): float(curve[k - 1]) for k in REPORT_KS if k <= len(curve)}


#: Object sizes by box area in pixels of the original image, COCO's thresholds (32^2, 96^2). COCO's
#: ranges share their end points; here each area falls in exactly one: [0, 32^2), [32^2, 96^2), [96^2, inf).
SIZE_RANGES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, float("inf"))}


class DetectionRateBySize(DetectionRate):
    """:class:`DetectionRate` plus one first-hit histogram per object size (:data:`SIZE_RANGES`).

    ``compute()`` adds ``"detection_rate_by_size": {size: {"num_objects": int,
    "detection_rate": {"k": rate}}}``; a size without objects has rates of None (undefined).
    """

    def reset(self) -> None:
        super().reset()
        self.size_hist = {name: np.zeros(self.max_k + 1, dtype=np.int64) for name in SIZE_RANGES}

    def _add(self, first: Tensor, gt: Tensor) -> None:
        super()._add(first, gt)
        area = ((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])).numpy()  # [M]
        for name, (low, high) in SIZE_RANGES.items():
            inside = (area >= low) & (area < high)
            self.size_hist[name] += np.bincount(first.numpy()[inside], minlength=self.max_k + 1)

    def compute(self) -> dict:
        out = super().compute()
        out["detection_rate_by_size"] = {name: self._size_rates(hist) for name, hist in self.size_hist.items()}
        return out

    def _size_rates(self, hist: np.ndarray) -> dict:
        rates = reported_rates(cumulative_rate(hist))
        if hist.sum() == 0:
            rates = dict.fromkeys(rates)  # no object of this size: the rate is undefined, not 0
        return {"num_objects": int(hist.sum()), "detection_rate": rates}
