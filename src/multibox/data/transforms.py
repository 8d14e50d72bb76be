"""Turning images into network input: the square crop, resized to S x S, as uint8 RGB.

The same code serves training samples and inference, so that what the network sees at test time is
produced exactly as in training. Crops are pixel xyxy in the image; the network's output is mapped
back with :func:`multibox.boxes.crop_to_image`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from multibox.data.images import UnusableImage, open_image
from multibox.errors import UserError

ACCEPTED_IMAGES = ("a file path, a PIL image, a numpy array [H, W, 3] (uint8, or float in [0, 1]) "
                   "or a Tensor[3, H, W] (uint8, or float in [0, 1])")
FLOAT_SLACK = 1e-3  # resampling overshoot tolerated (and clipped) on float images in [0, 1]


def to_pil(image: Image.Image | str | Path | Tensor | np.ndarray) -> Image.Image:
    """A PIL RGB image from one of :data:`ACCEPTED_IMAGES` (a path: EXIF orientation applied; a
    [H, W] or [1, H, W] grey array is taken too); anything else is a one-line UserError naming them."""
    if isinstance(image, (str, Path)):
        return _read_file(Path(image))
    if isinstance(image, Image.Image):  # an RGB image as it is: convert() would copy it (~1 ms for 400 px)
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise UserError(f"image: Tensor of shape {list(image.shape)}: expected {ACCEPTED_IMAGES}")
        image = image.detach().cpu().permute(1, 2, 0)  # [3, H, W] -> [H, W, 3]
        image = (image.double() if image.is_floating_point() else image).numpy()  # bfloat16 has no numpy type
    if isinstance(image, np.ndarray):
        return _array_image(image)
    raise UserError(f"image: a {type(image).__name__}: expected {ACCEPTED_IMAGES}")


def _read_file(path: Path) -> Image.Image:
    """The RGB image of a file, upright (EXIF orientation); an over-limit image is refused from its header."""
    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    try:
        return open_image(path)
    except UnusableImage as exc:  # one image asked for: an error, not the readers' "image skipped"
        raise UserError(str(exc).split(" -> ")[0]) from None


def _array_image(array: np.ndarray) -> Image.Image:
    """An RGB image of a [H, W, 3], [H, W, 1] or [H, W] array, uint8 or float in [0, 1]."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or 0 in array.shape:
        raise UserError(f"image: array of shape {list(array.shape)}: expected {ACCEPTED_IMAGES}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < -FLOAT_SLACK or array.max() > 1 + FLOAT_SLACK:
            raise UserError(f"image: float values in [{np.nanmin(array):.3g}, {np.nanmax(array):.3g}]: float images "
                            "must lie in [0, 1] (divide uint8 pixels by 255)")
        array = np.round(np.clip(array, 0, 1) * 255)
    elif array.dtype != np.uint8:
        raise UserError(f"image: pixels of type {array.dtype}: expected uint8, or float in [0, 1]")
    return Image.fromarray(np.ascontiguousarray(array.astype(np.uint8))).convert("RGB")


def crop_resize(image: Image.Image, crop: np.ndarray | Tensor | list[float], size: int, flip: bool = False) -> Tensor:
    """The pixel xyxy ``crop`` of ``image`` resized to size x size: Tensor[3, S, S] uint8 (:func:`resize_crop`)."""
    out = resize_crop(image, crop, size)
    if flip:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(out, dtype=np.uint8).copy()).permute(2, 0, 1)  # [S, S, 3] -> [3, S, S]


def resize_crop(image: Image.Image, crop: np.ndarray | Tensor | list[float], size: int) -> Image.Image:
    """The pixel xyxy ``crop`` of ``image`` resized to a size x size PIL image (no torch: the ONNX
    deployment's pre-processing uses it too).

    PIL's resize with a source box resamples the crop in one pass (antialiased bilinear). A crop that
    reaches past the image (a whole image padded to a square, a tile at the border) is black there:
    the part inside the image is resized at the crop's scale and pasted where it belongs.
    """
    box = tuple(float(v) for v in (crop.tolist() if hasattr(crop, "tolist") else crop))
    inside = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], image.width), min(box[3], image.height))
    if inside == box:
        return image.resize((size, size), Image.BILINEAR, box=box)
    return _padded_resize(image, box, inside, size)


def _padded_resize(image: Image.Image, box: tuple, inside: tuple, size: int) -> Image.Image:
    """:func:`crop_resize` of a crop reaching past the image: black outside it."""
    out = Image.new("RGB", (size, size))
    sx, sy = size / (box[2] - box[0]), size / (box[3] - box[1])
    x0, y0 = round((inside[0] - box[0]) * sx), round((inside[1] - box[1]) * sy)
    x1, y1 = round((inside[2] - box[0]) * sx), round((inside[3] - box[1]) * sy)
    if x1 > x0 and y1 > y0:
        out.paste(image.resize((x1 - x0, y1 - y0), Image.BILINEAR, box=inside), (x0, y0))
    return out
