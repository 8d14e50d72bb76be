"""How much labelling an image would teach the localizer (`multibox select`, issue 20 item 3).

Two measures of the model's doubt about one image, both in [0, 1], higher = more worth labelling:

* **disagreement** (the default ranking): the image and its mirror image should give the same boxes,
  mirrored. 1 - the mean best IoU between the top boxes of the two views, taken both ways (each view's
  top boxes matched to the other view's). Consistency under a flip needs no labels; where the model
  agrees with itself it has little to learn (whether this picks better images than chance is measured
  by bench/select_experiment.py, not assumed).
* **uncertainty**: how close the top boxes' scores sit to the decision threshold (calibrated scores:
  0.5), mean of 1 - |score - t| / max(t, 1 - t): 1 when every score is at the threshold, 0 at 0 or 1.

Boxes are pixel xyxy Tensor[N, 4]; scores Tensor[N] sorted high to low, as the Localizer returns them.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["flip_disagreement", "threshold_uncertainty", "mirror_boxes_back", "image_informativeness"]


def mirror_boxes_back(boxes: Tensor, width: float) -> Tensor:
    """Boxes Tensor[N, 4] pixel xyxy found in the mirrored image -> the same boxes in the original."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def _one_way(boxes: Tensor, other: Tensor) -> Tensor:
    """Each box's best IoU Tensor[N] with ``other`` (0 when ``other`` is empty)."""
    if len(other) == 0:
        return torch.zeros(len(boxes))
    return box_iou(boxes.float(), other.float()).max(dim=1).values


def flip_disagreement(boxes: Tensor, flipped: Tensor, top_n: int) -> float:
    """1 - mean best IoU of the first ``top_n`` boxes of each view with the other view's first ``top_n``.

    boxes: Tensor[N, 4] of the image; flipped: Tensor[N', 4] of its mirror, mapped back
    (:func:`mirror_boxes_back`); both sorted by score. 0.0 when neither view has a box (nothing to
    disagree on), 1.0 when only one has.
    """
    a, b = boxes[:top_n], flipped[:top_n]
    if len(a) + len(b) == 0:
        return 0.0
    best = torch.cat([_one_way(a, b), _one_way(b, a)])
    return float(1.0 - best.mean())


def threshold_uncertainty(scores: Tensor, top_n: int, threshold: float = 0.5) -> float:
    """Mean closeness of the first ``top_n`` scores (Tensor[N]) to ``threshold``; 0.0 without boxes."""
    s = scores[:top_n].float()
    if len(s) == 0:
        return 0.0
    return float((1.0 - (s - threshold).abs() / max(threshold, 1.0 - threshold)).mean())


def image_informativeness(localizer, image: Image.Image, top_n: int, threshold: float = 0.5,
                          keep: int | None = None) -> dict:
    """Both measures of one image, from one forward pass over the image and its mirror.

    localizer: anything with ``predict_batch(images, top_k)`` -> [(boxes, scores)] (a
    :class:`multibox.inference.localizer.Localizer`). keep: how many of the image's own boxes to return
    (default top_n). Returns {"disagreement", "uncertainty", "boxes" Tensor[N, 4], "scores" Tensor[N]}.
    """
    want = max(top_n, keep or top_n)
    (boxes, scores), (mirrored, _) = localizer.predict_batch([image, ImageOps.mirror(image)], top_k=want)
    back = mirror_boxes_back(mirrored, image.width)
    return {"disagreement": flip_disagreement(boxes, back, top_n),
            "uncertainty": threshold_uncertainty(scores, top_n, threshold),
            "boxes": boxes[: keep or top_n], "scores": scores[: keep or top_n]}
