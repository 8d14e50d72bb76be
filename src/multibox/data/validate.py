"""Index-time checks shared by the readers: box sanity, image size against the annotation, class names.

Rules (each violation is a :class:`~multibox.data.problems.Problem` naming the file and the object):

* NaN or infinite coordinate -> object dropped ("nonfinite-box").
* x2 <= x1 or y2 <= y1 -> object dropped ("degenerate-box").
* box partly outside the image -> clipped to it ("box-clipped"); up to half a pixel outside is clipped
  silently, as that is the rounding of pixel-centre vs pixel-edge conventions, not an annotation error.
* box entirely outside the image (nothing left after clipping) -> dropped ("box-outside-image").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from multibox.boxes import clip_boxes, valid_boxes
from multibox.data.images import DEFAULT_MAX_PIXELS, ImageInfo, probe_image
from multibox.data.problems import BadImage, ProblemLog

__all__ = ["clean_boxes", "probe_or_report", "reconcile_size", "VOC_CLASSES"]

#: PASCAL VOC's 20 classes in the official (alphabetical) order.
VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip

#: How far outside the image a coordinate may be before clipping it counts as a problem (pixels).
CLIP_TOLERANCE = 0.5


def _fmt(box: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in box) + ")"


def clean_boxes(
    boxes: np.ndarray,
    width: float | np.ndarray,
    height: float | np.ndarray,
    log: ProblemLog,
    file: str,
    where: Callable[[int], str],
) -> tuple[np.ndarray, np.ndarray]:
    """Validate pixel xyxy boxes [M, 4] of a (width, height) image (or per-box sizes, arrays [M]).

    Returns (keep bool [M], boxes float32 [M, 4] clipped to the image); problems go to ``log`` with
    ``where(m)`` naming object m. Vectorized: Python only runs for the problem objects.
    """
    raw = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.broadcast_to(np.asarray(width, np.float64), raw.shape[:1])
    h = np.broadcast_to(np.asarray(height, np.float64), raw.shape[:1])
    t = torch.from_numpy(raw)
    finite = torch.isfinite(t).all(dim=1)
    t = torch.where(finite[:, None], t, torch.zeros_like(t))  # keep NaN out of the comparisons below
    ordered = valid_boxes(t) & finite
    clipped = clip_boxes(t, torch.from_numpy(w.copy()), torch.from_numpy(h.copy()))
    outside = ((t - clipped).abs() > CLIP_TOLERANCE).any(dim=1) & ordered
    inside = valid_boxes(clipped) & ordered
    _report(
        log, file, where, raw, clipped.numpy(), w, h, finite.numpy(), ordered.numpy(), outside.numpy(), inside.numpy()
    )
    return inside.numpy(), clipped.numpy().astype(np.float32)


def _report(log, file, where, raw, clipped, w, h, finite, ordered, outside, inside) -> None:
    """One problem per bad box of :func:`clean_boxes` (masks are bool [M])."""
    for m in np.flatnonzero(~finite):
        log.add("nonfinite-box", file, where(m), f"non-finite coordinate {_fmt(raw[m])}", "object dropped")
    for m in np.flatnonzero(finite & ~ordered):
        what = f"degenerate box {_fmt(raw[m])} (x2 <= x1 or y2 <= y1)"
        log.add("degenerate-box", file, where(m), what, "object dropped")
    for m in np.flatnonzero(outside & ~inside):
        what = f"box {_fmt(raw[m])} lies outside the {w[m]:g}x{h[m]:g} image"
        log.add("box-outside-image", file, where(m), what, "object dropped")
    for m in np.flatnonzero(outside & inside):
        what = f"box {_fmt(raw[m])} extends outside the {w[m]:g}x{h[m]:g} image"
        log.add("box-clipped", file, where(m), what, f"clipped to {_fmt(clipped[m])}")


def probe_or_report(path: Path, log: ProblemLog, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo | None:
    """The image's header info, or None after reporting why it cannot be used (the image is skipped)."""
    try:
        return probe_image(path, max_pixels)
    except BadImage as error:
        log.report(error.problem)
        return None


def reconcile_size(
    file: str, annotated: tuple[int, int] | None, info: ImageInfo | None, log: ProblemLog, where: str = "size"
) -> tuple[int, int] | None:
    """The (width, height) boxes refer to: the oriented image's when probed, else the annotation's.

    A swapped annotation size on an EXIF-rotated image is the raw sensor frame: a note, not a problem.
    Any other disagreement is reported; the image's real size wins (boxes are then clipped to it).
    """
    if info is None:
        return annotated if annotated and min(annotated) > 0 else None
    real = (info.width, info.height)
    if not annotated or min(annotated) <= 0 or tuple(annotated) == real:
        return real
    if info.swapped and tuple(annotated) == real[::-1]:
        log.note("annotation size is pre-EXIF (swapped); used the oriented size")
        return real
    what = f"annotation says {annotated[0]}x{annotated[1]} but the image is {real[0]}x{real[1]}"
    log.add("size-mismatch", file, where, what, "used the image's size")
    return real
