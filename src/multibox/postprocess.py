"""Inference: center square crop -> one forward pass -> boxes in image pixels -> NMS -> top-k (§4.1, §4.2.2).

The network sees the maximal center square of the image resized to S x S; its boxes are mapped back
to the image and truncated to it (§4.1 "mapped and truncated to the final image area"), then pruned
with non-maximum suppression at Jaccard 0.5 and ranked by confidence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.ops import batched_nms

from multibox.boxes import center_square_crop, clip_boxes, crop_to_image, order_corners
from multibox.checkpoint import load_checkpoint, model_from_checkpoint
from multibox.model import MultiBox
from multibox.preprocess import crop_resize, to_pil

ImageLike = Image.Image | str | Path | Tensor | np.ndarray


def postprocess(outputs: dict[str, Tensor], crops: Tensor, image_sizes: Tensor, nms_iou: float | None = 0.5,
                top_k: int | None = None) -> list[dict[str, Tensor]]:
    """Network outputs -> per-image detections in image pixels.

    outputs: pred_boxes Tensor[B, K, 4] (xyxy in [0, 1] of the crop), pred_logits Tensor[B, K].
    crops: Tensor[B, 4], each input's pixel xyxy crop; image_sizes: Tensor[B, 2] (width, height).
    Returns B dicts {"boxes": Tensor[N, 4] pixel xyxy, "scores": Tensor[N]}, sorted by score.
    """
    boxes = crop_to_image(order_corners(outputs["pred_boxes"].float()), crops)  # [B, K, 4] pixels
    sizes = image_sizes.to(boxes)
    boxes = clip_boxes(boxes, sizes[:, 0, None], sizes[:, 1, None])  # per-image (width, height) as [B, 1]
    scores = outputs["pred_logits"].float().sigmoid()  # [B, K]
    return select(boxes, scores, nms_iou, top_k)


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


class Localizer:
    """A trained DeepMultiBox localizer for inference.

    >>> loc = Localizer.from_checkpoint("runs/demo/model.pt")
    >>> boxes, scores = loc.predict("photo.jpg", top_k=10)   # Tensor[N, 4] pixel xyxy, Tensor[N]
    """

    def __init__(self, model: MultiBox, image_size: int, device: str | torch.device = "cpu", nms_iou: float = 0.5) -> None:
        self.model = model.eval().to(device)
        self.image_size, self.device, self.nms_iou = image_size, torch.device(device), nms_iou

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Localizer:
        model, cfg = model_from_checkpoint(load_checkpoint(path))
        return cls(model, cfg.model.image_size, device)

    @torch.no_grad()
    def predict_batch(self, images: list[ImageLike], top_k: int | None = 10) -> list[tuple[Tensor, Tensor]]:
        """Detections for several images in one forward pass: [(boxes Tensor[N, 4] pixels, scores Tensor[N])]."""
        pils = [to_pil(im) for im in images]
        sizes = torch.tensor([im.size for im in pils], dtype=torch.float32)  # [B, 2] (width, height)
        crops = center_square_crop(sizes[:, 0], sizes[:, 1])  # [B, 4]
        batch = torch.stack([crop_resize(im, c, self.image_size) for im, c in zip(pils, crops)])
        outputs = self.model(batch.to(self.device))
        dets = postprocess(outputs, crops.to(self.device), sizes.to(self.device), self.nms_iou, top_k)
        return [(d["boxes"].cpu(), d["scores"].cpu()) for d in dets]

    def predict(self, image: ImageLike, top_k: int | None = 10) -> tuple[Tensor, Tensor]:
        """Detections for one image (PIL image, path or Tensor[3, H, W]): (boxes Tensor[N, 4] pixel xyxy, scores Tensor[N])."""
        return self.predict_batch([image], top_k)[0]
