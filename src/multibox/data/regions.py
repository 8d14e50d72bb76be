"""The square image region the classifier sees around a box, and cutting many such regions at once.

The paper scores each localizer box with a classifier "evaluated on the maximum square region around
the crop" for VOC (§4.2.2) and "on the minimum square region around the crop" for ILSVRC (§4.4.1),
without saying more. Our reading, for a box of width w and height h centred at (cx, cy):

* ``"max"`` (§4.2.2): the square of side max(w, h) centred on the box -- the box grown along its
  short side, so the whole object is seen with some context;
* ``"min"`` (§4.4.1): the square of side min(w, h) centred on the box -- the box cut along its long
  side, the centre crop an ImageNet classifier is usually evaluated on.

"max" and "min" name the side taken of the two; the other reading of "maximum square" (the largest
square inside the image centred on the box) would show a small object's classifier mostly background.

At the image border the square is **shifted**, never shrunk, until it lies inside the image; a square
larger than the image's short side (a box wider than the image is tall) is first cut to that side, so
every region is a square inside the image and the classifier never sees stretched pixels. Degenerate
boxes get a side of at least ``MIN_SIDE`` pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.ops import roi_align

from multibox.config import CLASSIFIER_REGIONS

MIN_SIDE = 1.0  # pixels: the smallest region side, so a zero-width box still has pixels to classify


def square_regions(boxes: Tensor, width: float | Tensor, height: float | Tensor, mode: str = "max") -> Tensor:
    """Square pixel xyxy regions Tensor[..., 4] around pixel xyxy ``boxes`` Tensor[..., 4] (module rules).

    width, height: the image size, floats or tensors broadcastable to ``boxes[..., 0]``.
    """
    if mode not in CLASSIFIER_REGIONS:
        raise ValueError(f"region {mode!r}: expected one of {', '.join(CLASSIFIER_REGIONS)}")
    boxes = boxes.float()
    w = torch.as_tensor(width, dtype=boxes.dtype).expand_as(boxes[..., 0])
    h = torch.as_tensor(height, dtype=boxes.dtype).expand_as(boxes[..., 0])
    bw, bh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    side = torch.maximum(bw, bh) if mode == "max" else torch.minimum(bw, bh)
    side = side.clamp(min=MIN_SIDE).minimum(torch.minimum(w, h))  # fits the image's short side
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    x0 = (cx - side / 2).clamp(min=0).minimum(w - side)  # shift into the image, never shrink
    y0 = (cy - side / 2).clamp(min=0).minimum(h - side)
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=-1)


def image_tensor(image: Image.Image) -> Tensor:
    """A PIL image as Tensor[3, H, W] float32 with values 0-255 (what :func:`crop_regions` cuts from)."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).copy()).permute(2, 0, 1)


def crop_regions(image: Tensor, regions: Tensor, size: int) -> Tensor:
    """Cut N pixel xyxy ``regions`` Tensor[N, 4] out of ``image`` Tensor[3, H, W] (0-255) and resize
    each to size x size: Tensor[N, 3, S, S] uint8, in one call (no loop over boxes).

    roi_align with ``aligned=True`` maps a region [0, 0, W, H] exactly onto the image, and its adaptive
    sampling (``sampling_ratio=-1``: ceil(region side / S) samples per output pixel, averaged)
    antialiases when shrinking. Training crops (:mod:`multibox.data.classifier_samples`) and the
    detector use this same function, so the classifier sees test inputs made as its training inputs.
    """
    if len(regions) == 0:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    rois = torch.cat([torch.zeros(len(regions), 1), regions.float().cpu()], dim=1)  # [N, 5]: batch index 0
    out = roi_align(image[None].float(), rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return out.round().clamp(0, 255).to(torch.uint8)  # [N, 3, S, S]
