"""Box conventions and geometry.

The library's one convention is xyxy normalized to [0, 1] of the network's square input crop.
Readers convert from their formats (pixel xywh for COCO, normalized cxcywh for YOLO, pixel xyxy for
VOC) with the functions here; outputs convert back to pixels of the full image. Everything is batched
over leading dimensions: no Python loops over boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_area, box_convert, box_iou

__all__ = [
    "box_area",
    "box_iou",
    "batched_box_iou",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "normalize",
    "denormalize",
    "clip_boxes",
    "center_square_crop",
    "crop_to_image",
    "image_to_crop",
    "valid_boxes",
    "order_corners",
]


def _flat(fn, boxes: Tensor, *args) -> Tensor:
    """Apply a torchvision [N, 4] op to boxes of any leading shape [..., 4]."""
    return fn(boxes.reshape(-1, 4), *args).reshape(boxes.shape)  # [..., 4] -> [N, 4] -> [..., 4]


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """COCO (x, y, w, h) -> (x1, y1, x2, y2). boxes: Tensor[..., 4]."""
    return _flat(box_convert, boxes, "xywh", "xyxy")


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """(x1, y1, x2, y2) -> COCO (x, y, w, h). boxes: Tensor[..., 4]."""
    return _flat(box_convert, boxes, "xyxy", "xywh")


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """YOLO (cx, cy, w, h) -> (x1, y1, x2, y2). boxes: Tensor[..., 4]."""
    return _flat(box_convert, boxes, "cxcywh", "xyxy")


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(x1, y1, x2, y2) -> YOLO (cx, cy, w, h). boxes: Tensor[..., 4]."""
    return _flat(box_convert, boxes, "xyxy", "cxcywh")


def _scale(width: float | Tensor, height: float | Tensor, like: Tensor) -> Tensor:
    """[..., 4] multiplier (w, h, w, h), broadcastable against boxes of shape like [..., 4]."""
    w = torch.as_tensor(width, dtype=like.dtype, device=like.device)
    h = torch.as_tensor(height, dtype=like.dtype, device=like.device)
    return torch.stack([w, h, w, h], dim=-1)


def normalize(boxes: Tensor, width: float | Tensor, height: float | Tensor) -> Tensor:
    """Pixel xyxy -> xyxy in [0, 1] of a (width, height) frame. width/height may be Tensor[...]."""
    return boxes / _scale(width, height, boxes)


def denormalize(boxes: Tensor, width: float | Tensor, height: float | Tensor) -> Tensor:
    """xyxy in [0, 1] -> pixel xyxy of a (width, height) frame."""
    return boxes * _scale(width, height, boxes)


def clip_boxes(boxes: Tensor, width: float | Tensor = 1.0, height: float | Tensor = 1.0) -> Tensor:
    """Truncate xyxy boxes Tensor[..., 4] to [0, width] x [0, height] (§4.1: "mapped and truncated to
    the image"). width/height may be tensors broadcastable to boxes[..., 0] (e.g. [B, 1] per image)."""
    upper = _scale(width, height, boxes)
    return torch.minimum(boxes.clamp(min=0), upper)


def order_corners(boxes: Tensor) -> Tensor:
    """(min x, min y, max x, max y) of each Tensor[..., 4]: a regressed box may come out with its corners
    swapped (nothing in Eq. 1 forbids it), and every consumer expects x1 <= x2, y1 <= y2."""
    return torch.cat([torch.minimum(boxes[..., :2], boxes[..., 2:]), torch.maximum(boxes[..., :2], boxes[..., 2:])], dim=-1)


def valid_boxes(boxes: Tensor, min_size: float = 0.0) -> Tensor:
    """Bool[...]: x2 - x1 > min_size and y2 - y1 > min_size, and every coordinate finite."""
    finite = torch.isfinite(boxes).all(dim=-1)
    return finite & (boxes[..., 2] - boxes[..., 0] > min_size) & (boxes[..., 3] - boxes[..., 1] > min_size)


def center_square_crop(width: float | Tensor, height: float | Tensor) -> Tensor:
    """The maximal centered square of a (width, height) image (§4.2.2), as pixel xyxy Tensor[..., 4]."""
    w = torch.as_tensor(width, dtype=torch.float32)
    h = torch.as_tensor(height, dtype=torch.float32)
    side = torch.minimum(w, h)
    x0, y0 = (w - side) / 2, (h - side) / 2
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=-1)


def _crop_frame(crop: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """Origin (x0, y0, x0, y0) and scale (w, h, w, h) of pixel xyxy crops, as Tensor[..., 1, 4]."""
    crop = crop.to(like).unsqueeze(-2)  # [..., 1, 4]
    origin = crop[..., [0, 1, 0, 1]]
    return origin, crop[..., [2, 3, 2, 3]] - origin


def crop_to_image(boxes: Tensor, crop: Tensor) -> Tensor:
    """Map boxes normalized to a crop back to pixels of the full image.

    boxes: Tensor[..., N, 4], xyxy in [0, 1] of the crop.
    crop: Tensor[..., 4], the crop's pixel xyxy in the image (one per leading index).
    Returns Tensor[..., N, 4], pixel xyxy in the image (not clipped; see :func:`clip_boxes`).
    """
    origin, scale = _crop_frame(crop, boxes)
    return boxes * scale + origin


def image_to_crop(boxes: Tensor, crop: Tensor) -> Tensor:
    """Inverse of :func:`crop_to_image`: pixel xyxy in the image -> xyxy normalized to the crop."""
    origin, scale = _crop_frame(crop, boxes)
    return (boxes - origin) / scale


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Jaccard overlap per batch element: Tensor[B, K, 4] x Tensor[B, M, 4] -> Tensor[B, K, M]."""
    return torch.vmap(box_iou)(boxes1, boxes2)
