"""Detection rate against the number of boxes per image (the paper's Fig. 1).

For each k, the share of ground-truth objects that at least one of the image's top-k boxes hits at
Jaccard >= 0.5 (the PASCAL criterion). One pass computes every k at once: per object we record the
rank of the first box that hits it, and the curve is the cumulative histogram of those ranks.
Objects flagged ``ignore`` are not counted.
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
    sorted by descending score (as :func:`multibox.postprocess.postprocess` returns them); targets are
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
            gt = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
            ignore = torch.as_tensor(target.get("ignore", torch.zeros(len(gt), dtype=torch.bool)), dtype=torch.bool)
            gt = gt[~ignore]
            boxes = torch.as_tensor(pred["boxes"], dtype=torch.float32).reshape(-1, 4)[: self.max_k]
            first = torch.full((len(gt),), self.max_k, dtype=torch.int64)
            if len(gt) and len(boxes):
                hit = box_iou(boxes, gt) >= self.iou_threshold  # [N, M]
                rank = torch.where(hit, torch.arange(len(boxes))[:, None], self.max_k)  # [N, M]
                first = rank.min(dim=0).values
            self.first_hit_hist += np.bincount(first.numpy(), minlength=self.max_k + 1)

    @property
    def num_objects(self) -> int:
        return int(self.first_hit_hist.sum())

    def curve(self) -> np.ndarray:
        """float[max_k]: detection rate with the top 1, 2, ..., max_k boxes."""
        return np.cumsum(self.first_hit_hist[:-1]) / max(self.num_objects, 1)

    def compute(self) -> dict:
        """{"num_images", "num_objects", "detection_rate": {"k": rate for the reported k <= max_k}, "curve"}."""
        curve = self.curve()
        return {
            "num_images": self.num_images,
            "num_objects": self.num_objects,
            "detection_rate": {str(k): float(curve[k - 1]) for k in REPORT_KS if k <= self.max_k},
            "curve": [float(v) for v in curve],
        }
