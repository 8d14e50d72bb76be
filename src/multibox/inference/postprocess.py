"""From network outputs to detections: boxes mapped from each window to image pixels, truncated to the
image (§4.1 "mapped and truncated to the final image area"), pruned with non-maximum suppression at
Jaccard 0.5 and ranked by confidence (§4.2.2).

One function, :func:`merge_windows`, serves every window layout (:mod:`multibox.inference.windows`):
the boxes of all of an image's windows are pooled and pruned by one NMS, so a box seen in two windows
survives once. :func:`postprocess` is its one-window form.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from multibox.boxes import clip_boxes, crop_to_image, order_corners


def merge_windows(outputs: dict[str, Tensor], windows: Tensor, image_sizes: Tensor, nms_iou: float | None = 0.5,
                  top_k: int | None = None) -> list[dict[str, Tensor]]:
    """Network outputs of B x W windows -> per-image detections in image pixels (one NMS per image).

    outputs: pred_boxes Tensor[B*W, K, 4] (xyxy in [0, 1] of each window), pred_logits Tensor[B*W, K],
    rows ordered image by image. windows: Tensor[B, W, 4] pixel xyxy; image_sizes: Tensor[B, 2] (w, h).
    Returns B dicts {"boxes": Tensor[N, 4], "scores": Tensor[N]} sorted by score.
    """
    b = windows.shape[0]
    pred = order_corners(outputs["pred_boxes"].float())  # x1 <= x2, y1 <= y2 before mapping and NMS
    boxes = crop_to_image(pred, windows.reshape(-1, 4).to(pred))  # [B*W, K, 4]
    boxes = boxes.reshape(b, -1, 4)  # [B, W*K, 4]: every window's boxes in its image's frame
    sizes = image_sizes.to(boxes)
    boxes = clip_boxes(boxes, sizes[:, 0, None], sizes[:, 1, None])  # per-image (width, height) as [B, 1]
    scores = outputs["pred_logits"].float().sigmoid().reshape(b, -1)  # [B, W*K]
    return select(boxes, scores, nms_iou, top_k)


def postprocess(outputs: dict[str, Tensor], crops: Tensor, image_sizes: Tensor, nms_iou: float | None = 0.5,
                top_k: int | None = None) -> list[dict[str, Tensor]]:
    """Network outputs -> per-image detections in image pixels.

    outputs: pred_boxes Tensor[B, K, 4] (xyxy in [0, 1] of the crop), pred_logits Tensor[B, K].
    crops: Tensor[B, 4], each input's pixel xyxy crop; image_sizes: Tensor[B, 2] (width, height).
    Returns B dicts {"boxes": Tensor[N, 4] pixel xyxy, "scores": Tensor[N]}, sorted by score.
    """
    return merge_windows(outputs, crops[:, None], image_sizes, nms_iou, top_k)  # one window per image


def select(boxes: Tensor, scores: Tensor, nms_iou: float | None, top_k: int | None) -> list[dict[str, Tensor]]:
    """NMS per image (one batched_nms call over the whole batch) and top-k by score.

    boxes: Tensor[B, K, 4]; scores: Tensor[B, K]. Returns B dicts of Tensor[N, 4] and Tensor[N].
    """
    b, k = scores.shape
    flat_boxes, flat_scores = boxes.reshape(-1, 4), scores.reshape(-1)  # [B*K, 4], [B*K]
    image_of = torch.arange(b, device=boxes.device).repeat_interleave(k)  # [B*K]
    if nms_iou is None:
        keep = torch.argsort(flat_scores, descending=True, stable=True)
    else:
        keep = batched_nms(flat_boxes, flat_scores, image_of, nms_iou)  # sorted by score
    results = []
    for i in range(b):  # split the kept indices per image
        idx = keep[image_of[keep] == i][:top_k]
        results.append({"boxes": flat_boxes[idx], "scores": flat_scores[idx]})
    return results
