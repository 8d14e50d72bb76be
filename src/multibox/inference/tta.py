"""Test-time augmentation: the network also looks at mirrored and rotated copies of each window, and
every copy's boxes, mapped back to the window, join one NMS (:func:`multibox.inference.postprocess.merge_windows`).

An object seen under several transforms gets several votes for its box, and NMS keeps the best-scored
one; an object missed in one orientation can be found in another. The cost is one forward pass per
copy. The transforms are the dihedral ones the cached-feature training already shows the head
(:func:`multibox.engine.feature_cache.dihedral`): "flip" (the image and its mirror, 2 passes) or
"dihedral" (mirror x four 90-degree rotations, 8 passes; for data where "up" does not matter).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multibox.config import TTA_MODES
from multibox.engine.feature_cache import dihedral

TRANSFORMS = dict(zip(TTA_MODES, ((0, 4), tuple(range(8)))))  # mode -> the dihedral transforms it runs


def rotate_boxes(boxes: Tensor) -> Tensor:
    """Boxes Tensor[..., 4] xyxy in [0, 1] of a square under a 90-degree counter-clockwise rotation
    (torch.rot90 of the image): (x, y) -> (y, 1 - x)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([y0, 1 - x1, y1, 1 - x0], -1)


def mirror_boxes(boxes: Tensor) -> Tensor:
    """Boxes Tensor[..., 4] xyxy in [0, 1] under a left-right mirror."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([1 - x1, y0, 1 - x0, y1], -1)


def transform_boxes(boxes: Tensor, t: int) -> Tensor:
    """Boxes of a square image in [0, 1] -> the same boxes in :func:`dihedral`'s transform t of it."""
    if t >= 4:
        boxes = mirror_boxes(boxes)
    for _ in range(t % 4):
        boxes = rotate_boxes(boxes)
    return boxes


def untransform_boxes(boxes: Tensor, t: int) -> Tensor:
    """Inverse of :func:`transform_boxes`: boxes found in transform t of the image -> the image's."""
    for _ in range((4 - t % 4) % 4):
        boxes = rotate_boxes(boxes)
    return mirror_boxes(boxes) if t >= 4 else boxes


def tta_forward(model: nn.Module, inputs: Tensor, mode: str) -> dict[str, Tensor]:
    """The model on every transform of inputs Tensor[T, 3, S, S], boxes mapped back: {"pred_boxes":
    Tensor[T, V * K, 4] xyxy in [0, 1] of each input, "pred_logits": Tensor[T, V * K]}, V transforms."""
    kinds = TRANSFORMS[mode]
    outputs = model(torch.cat([dihedral(inputs, t) for t in kinds]))  # [V * T, K, ...]
    n = inputs.shape[0]
    boxes = [untransform_boxes(outputs["pred_boxes"][v * n : (v + 1) * n], t) for v, t in enumerate(kinds)]
    logits = [outputs["pred_logits"][v * n : (v + 1) * n] for v in range(len(kinds))]
    return {"pred_boxes": torch.cat(boxes, 1), "pred_logits": torch.cat(logits, 1)}
