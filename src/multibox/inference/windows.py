"""The windows of an image the localizer looks at, pixel xyxy squares each resized to S x S.

* ``"whole"`` (the default): the whole image padded to a square (black below or right of it), one
  window, so no part of a non-square photo goes unsearched;
* ``"center"`` (§4.1, §4.2.2): the maximal center square, one window (the paper's; on a 4:3 photo the
  left and right eighths are never searched);
* ``"multiscale"`` (§4.3, the second model of Fig. 1): the center square plus a 3 x 3 grid;
* ``"tiles"``: squares of ``tile`` pixels overlapping by ``overlap`` of their side, covering the image
  (the last row and column aligned with its edges), for images much larger than the network input
  (aerial photos, microscopy, documents): an object cut by a tile border is whole in a neighbouring
  tile when the overlap exceeds its size, and the one NMS over all tiles reports it once.

For the grid of §4.3:

"the max-center crop by a second scale where we select 3 x 3 windows of size 60% of the image
size". Our reading: each window is a **square of side 0.6 x min(W, H)**, the windows' corners spaced
evenly from the image's left/top edge to its right/bottom edge (offsets 0, (W - side) / 2, W - side
and likewise in y), so the nine squares cover a square image and overlap their neighbours. Squares,
not 0.6 W x 0.6 H rectangles, because the localizer is trained on undistorted square crops; on an
image more than 1.8 times wider than tall the grid leaves vertical gaps (the center square covers
part of them).

All windows of all images run through the network as **one batch**; every window's boxes are
mapped to image pixels, truncated to the image (§4.1), pooled per image (W x K boxes) and pruned
together by one NMS (Jaccard 0.5) and top-k (:func:`multibox.inference.postprocess.merge_windows`), so a
box seen in two windows survives once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from multibox.boxes import center_square_crop
from multibox.config import WINDOW_MODES
from multibox.data.transforms import crop_resize

WINDOW_FRACTION = 0.6  # §4.3: windows of 60 % of the image size
GRID = 3  # §4.3: 3 x 3 windows
NUM_WINDOWS = 1 + GRID * GRID


def multiscale_windows(width: float | Tensor, height: float | Tensor, fraction: float = WINDOW_FRACTION,
                       grid: int = GRID) -> Tensor:
    """Pixel xyxy windows Tensor[..., 1 + grid^2, 4]: the max center square, then the grid squares
    row by row (top-left first), float32. width/height: floats or Tensor[...].

    Computed in float64, so that e.g. 0.6 x 50 is exactly 30 (float32 would give 30.000002).
    """
    w, h = torch.as_tensor(width, dtype=torch.float64), torch.as_tensor(height, dtype=torch.float64)
    side = fraction * torch.minimum(w, h)  # [...]
    steps = torch.linspace(0, 1, grid, dtype=torch.float64)  # [g]
    x0 = ((w - side)[..., None] * steps)[..., None, :].expand(*w.shape, grid, grid)  # [..., g(row), g(col)]
    y0 = ((h - side)[..., None] * steps)[..., :, None].expand(*h.shape, grid, grid)
    s = side[..., None, None].expand_as(x0)
    squares = torch.stack([x0, y0, x0 + s, y0 + s], dim=-1).flatten(-3, -2)  # [..., g*g, 4]
    return torch.cat([center_square_crop(w, h)[..., None, :], squares.float()], dim=-2)


def window_inputs(image, windows: Tensor, size: int) -> Tensor:
    """The W windows Tensor[W, 4] of a PIL image resized to the network input: Tensor[W, 3, S, S] uint8.

    crop_resize, as the localizer's training crops are made; a loop over the ten windows, not boxes.
    """
    return torch.stack([crop_resize(image, window, size) for window in windows])


def padded_square(width: float, height: float) -> Tensor:
    """The whole image as one square window Tensor[1, 4], anchored at the top-left corner."""
    side = max(float(width), float(height))
    return torch.tensor([[0.0, 0.0, side, side]])


def tile_offsets(length: float, tile: float, overlap: float) -> Tensor:
    """Offsets Tensor[n] of tiles of side ``tile`` along a side of ``length``: evenly spread from 0 to
    length - tile, neighbours sharing at least ``overlap`` of a tile (one tile when it covers the side)."""
    if length <= tile:
        return torch.zeros(1)
    step = tile * (1 - overlap)
    n = math.ceil((length - tile) / step - 1e-9) + 1
    return torch.linspace(0, length - tile, n)


def tile_windows(width: float, height: float, tile: float, overlap: float = 0.2) -> Tensor:
    """Square tiles Tensor[W, 4] pixel xyxy covering a width x height image, row by row."""
    xs, ys = tile_offsets(float(width), tile, overlap), tile_offsets(float(height), tile, overlap)
    x0, y0 = xs[None, :].expand(len(ys), -1).reshape(-1), ys[:, None].expand(-1, len(xs)).reshape(-1)  # [W]
    return torch.stack([x0, y0, x0 + tile, y0 + tile], dim=-1)


def image_windows(width: float | Tensor, height: float | Tensor, mode: str = "whole", tile: float | None = None,
                  overlap: float = 0.2) -> Tensor:
    """The windows Tensor[W, 4] (pixel xyxy, float32) of one width x height image in ``mode`` (one of
    :data:`multibox.config.WINDOW_MODES`); ``tile`` (pixels) and ``overlap`` for "tiles"."""
    if mode == "whole":
        return padded_square(float(width), float(height))
    if mode == "tiles":
        if not tile or tile <= 0:
            raise ValueError("window mode 'tiles' needs a tile size in pixels")
        return tile_windows(float(width), float(height), float(tile), overlap)
    if mode == "center":
        return center_square_crop(torch.as_tensor(width, dtype=torch.float32),
                                  torch.as_tensor(height, dtype=torch.float32))[None]  # [1, 4]
    if mode == "multiscale":
        return multiscale_windows(width, height)
    raise ValueError(f"window mode {mode!r}: expected one of {', '.join(WINDOW_MODES)}")
