"""Turning images into network input: the square crop, resized to S x S, as uint8 RGB.

The same code serves training samples and inference, so that what the network sees at test time is
produced exactly as in training. Crops are pixel xyxy in the image; the network's output is mapped
back with :func:`multibox.boxes.crop_to_image`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from multibox.errors import UserError


def to_pil(image: Image.Image | str | Path | Tensor | np.ndarray) -> Image.Image:
    """A PIL RGB image from a PIL image, a file path (EXIF orientation applied), a Tensor[3, H, W]
    (uint8, or float in [0, 1]) or a uint8 array [H, W, 3]."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise UserError(f"{path}: no such image file")
        try:
            with Image.open(path) as im:
                return ImageOps.exif_transpose(im).convert("RGB")
        except OSError as exc:
            raise UserError(f"{path}: cannot read image ({exc})") from None
    if isinstance(image, Tensor):
        if image.is_floating_point():
            image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        image = image.permute(1, 2, 0).cpu().numpy()  # [3, H, W] -> [H, W, 3]
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(image))
    return image.convert("RGB")


def crop_resize(image: Image.Image, crop: np.ndarray | Tensor | list[float], size: int, flip: bool = False) -> Tensor:
    """The pixel xyxy ``crop`` of ``image`` resized to size x size: Tensor[3, S, S] uint8.

    PIL's resize with a source box resamples the crop in one pass (antialiased bilinear). A crop that
    reaches past the image (a whole image padded to a square, a tile at the border) is black there:
    the part inside the image is resized at the crop's scale and pasted where it belongs.
    """
    box = tuple(float(v) for v in (crop.tolist() if hasattr(crop, "tolist") else crop))
    inside = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], image.width), min(box[3], image.height))
    if inside == box:
        out = image.resize((size, size), Image.BILINEAR, box=box)
    else:
        out = _padded_resize(image, box, inside, size)
    if flip:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(out, dtype=np.uint8).copy()).permute(2, 0, 1)  # [S, S, 3] -> [3, S, S]


def _padded_resize(image: Image.Image, box: tuple, inside: tuple, size: int) -> Image.Image:
    """:func:`crop_resize` of a crop reaching past the image: black outside it."""
    out = Image.new("RGB", (size, size))
    sx, sy = size / (box[2] - box[0]), size / (box[3] - box[1])
    x0, y0 = round((inside[0] - box[0]) * sx), round((inside[1] - box[1]) * sy)
    x1, y1 = round((inside[2] - box[0]) * sx), round((inside[3] - box[1]) * sy)
    if x1 > x0 and y1 > y0:
        out.paste(image.resize((x1 - x0, y1 - y0), Image.BILINEAR, box=inside), (x0, y0))
    return out
