"""The windows of an image the localizer looks at, pixel xyxy squares each resized to S x S.

* ``"center"`` (§4.1, §4.2.2): the maximal center square, one window;
* ``"multiscale"`` (§4.3, the second model of Fig. 1): the center square plus a 3 x 3 grid.

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


def image_windows(width: float | Tensor, height: float | Tensor, mode: str = "center") -> Tensor:
    """The windows Tensor[W, 4] (pixel xyxy, float32) of one width x height image in ``mode``
    (one of :data:`multibox.config.WINDOW_MODES`)."""
    if mode == "center":
        return center_square_crop(torch.as_tensor(width, dtype=torch.float32),
                                  torch.as_tensor(height, dtype=torch.float32))[None]  # [1, 4]
    if mode == "multiscale":
        return multiscale_windows(width, height)
    raise ValueError(f"window mode {mode!r}: expected one of {', '.join(WINDOW_MODES)}")
