"""From network outputs to detections: boxes mapped from each window to image pixels, truncated to the
image (§4.1 "mapped and truncated to the final image area"), pruned with non-maximum suppression at
Jaccard 0.5 and ranked by confidence (§4.2.2).

One function, :func:`merge_windows`, serves every window layout (:mod:`multibox.inference.windows`):
the boxes of all of an image's windows are pooled and pruned by one NMS, so a box seen in two windows
survives once. :func:`postprocess` is its one-window form.

No degenerate box is ever returned: after truncation to the image, a box less than
:data:`MIN_BOX_SIDE` pixel wide or tall (a box predicted outside its window, or over the black padding
of a non-square image, truncates to a line or a point) is dropped before NMS and top-k, so it takes
no slot of the k kept; so is a box scoring under ``min_score``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou, nms

from multibox.boxes import clip_boxes, crop_to_image, order_corners
from multibox.errors import UserError

MIN_BOX_SIDE = 1.0  # pixels: a narrower or flatter box after truncation is not a detection


def merge_windows(outputs: dict[str, Tensor], windows: Tensor, image_sizes: Tensor, nms_iou: float | None = 0.5,
                  top_k: int | None = None, counts: Tensor | None = None, drop_cut: bool = False,
                  min_score: float = 0.0) -> list[dict[str, Tensor]]:
    """Network outputs of every window of B images -> per-image detections in image pixels (one NMS per image).

    outputs: pred_boxes Tensor[T, K, 4] (xyxy in [0, 1] of each window), pred_logits Tensor[T, K], rows
    ordered image by image. windows: Tensor[B, W, 4] pixel xyxy (T = B*W), or with ``counts``
    (Tensor[B], windows per image, e.g. tiles) Tensor[T, 4]. image_sizes: Tensor[B, 2] (width, height).
    drop_cut (tiles): a box that touches a tile border inside the image, and lies mostly inside a
    higher-scoring box, is the cut-off part of an object the neighbouring tile sees whole: dropped.
    Boxes under MIN_BOX_SIDE pixels wide or tall, or scoring under ``min_score``, are dropped first.
    Returns B dicts {"boxes": Tensor[N, 4], "scores": Tensor[N]} sorted by score.
    """
    b = image_sizes.shape[0]
    if counts is None:
        counts = torch.full((b,), windows.shape[1], dtype=torch.int64)
        windows = windows.reshape(-1, 4)  # [B*W, 4]
    pred = order_corners(outputs["pred_boxes"].float())  # x1 <= x2, y1 <= y2 before mapping and NMS
    k = pred.shape[1]
    boxes = crop_to_image(pred, windows.to(pred))  # [T, K, 4] in each window's image
    image_of = torch.repeat_interleave(torch.arange(b, device=pred.device), counts.to(pred.device))  # [T]
    sizes = image_sizes.to(boxes)[image_of]  # [T, 2]
    boxes = clip_boxes(boxes, sizes[:, 0, None], sizes[:, 1, None])  # per window's image (width, height) as [T, 1]
    scores = outputs["pred_logits"].float().sigmoid()  # [T, K]
    cut = touches_inner_border(pred, windows.to(pred), sizes) if drop_cut else None  # [T, K]
    valid = (proper_boxes(boxes) & (scores >= min_score)).reshape(-1)  # [T*K]
    dets = select_flat(boxes.reshape(-1, 4), scores.reshape(-1), image_of.repeat_interleave(k), b, nms_iou,
                       None if drop_cut else top_k, None if cut is None else cut.reshape(-1), valid)
    return [drop_cut_parts(d, top_k) for d in dets] if drop_cut else dets


def check_options(min_score: float = 0.0, iou: float | None = None, top_k: int | None = None,
                  max_det: int | None = None) -> None:
    """A one-line UserError naming the prediction option that is out of range."""
    if not 0.0 <= min_score <= 1.0:
        raise UserError(f"min_score {min_score}: expected a score in [0, 1]")
    if iou is not None and not 0.0 < iou <= 1.0:
        raise UserError(f"iou {iou}: expected an NMS threshold in (0, 1]")
    for name, value in (("top_k", top_k), ("max_det", max_det)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UserError(f"{name} {value}: expected a whole number >= 1")


def fewest(*limits: int | None) -> int | None:
    """The smallest of the given limits on a count (None: no limit)."""
    given = [n for n in limits if n is not None]
    return min(given) if given else None


def keep_best(det: dict[str, Tensor], min_score: float = 0.0, max_det: int | None = None) -> dict[str, Tensor]:
    """One image's detections (Tensors [D, ...], sorted by det["scores"]) scoring at least ``min_score``,
    at most ``max_det`` of them."""
    keep = (det["scores"] >= min_score).nonzero()[:, 0][:max_det]
    return {k: v[keep] for k, v in det.items()}


def proper_boxes(boxes: Tensor, min_side: float = MIN_BOX_SIDE) -> Tensor:
    """Bool Tensor[...]: the box (boxes Tensor[..., 4], xyxy pixels) is at least ``min_side`` wide and tall."""
    return ((boxes[..., 2] - boxes[..., 0]) >= min_side) & ((boxes[..., 3] - boxes[..., 1]) >= min_side)


CUT_MARGIN = 0.01  # of a window's side: a box edge this close to a window border touches it
CUT_CONTAINED = 0.7  # a cut box this much inside a better box is a part of it


def touches_inner_border(pred: Tensor, windows: Tensor, sizes: Tensor) -> Tensor:
    """Bool Tensor[T, K]: box k of window t (pred Tensor[T, K, 4] in the window's [0, 1] frame) touches a
    border of its window that lies inside the image (windows Tensor[T, 4] pixels, sizes Tensor[T, 2])."""
    inner = torch.stack([windows[:, 0] > 0.5, windows[:, 1] > 0.5, windows[:, 2] < sizes[:, 0] - 0.5,
                         windows[:, 3] < sizes[:, 1] - 0.5], dim=-1)  # [T, 4]: left, top, right, bottom
    touch = torch.cat([pred[..., :2] <= CUT_MARGIN, pred[..., 2:] >= 1 - CUT_MARGIN], dim=-1)  # [T, K, 4]
    return (touch & inner[:, None, :]).any(-1)


CUT_CHUNK = 256  # boxes tested at a time: memory CUT_CHUNK x N, not N x N (a big image's tiles give N ~ 10^5)


def drop_cut_parts(det: dict[str, Tensor], top_k: int | None) -> dict[str, Tensor]:
    """One image's detections without the cut boxes (det["cut"]) lying mostly inside a higher-scoring box.

    Boxes are sorted by score and a box's fate depends only on those before it, so they are tested
    CUT_CHUNK at a time against their predecessors, stopping once ``top_k`` boxes are kept.
    """
    boxes, cut = det["boxes"], det.pop("cut")
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-9).prod(-1)  # [N]
    keep, kept = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device), 0
    for start in range(0, len(boxes), CUT_CHUNK):  # a loop over chunks of boxes, each tested at once
        end = min(start + CUT_CHUNK, len(boxes))
        lo = torch.maximum(boxes[start:end, None, :2], boxes[None, :end, :2])  # [c, end, 2]
        hi = torch.minimum(boxes[start:end, None, 2:], boxes[None, :end, 2:])
        inside = (hi - lo).clamp(min=0).prod(-1) / area[start:end, None] >= CUT_CONTAINED  # [c, end]: i inside j
        order = torch.arange(end, device=boxes.device)
        better = order[None, :] < order[start:end, None]  # j < i: sorted by score, so j scores higher
        keep[start:end] = ~(cut[start:end] & (inside & better).any(1))
        kept += int(keep[start:end].sum())
        if top_k is not None and kept >= top_k:
            keep[end:] = False  # not needed: top_k boxes are kept
            break
    return {k: v[keep][:top_k] for k, v in det.items()}


def postprocess(outputs: dict[str, Tensor], crops: Tensor, image_sizes: Tensor, nms_iou: float | None = 0.5,
                top_k: int | None = None) -> list[dict[str, Tensor]]:
    """Network outputs -> per-image detections in image pixels.

    outputs: pred_boxes Tensor[B, K, 4] (xyxy in [0, 1] of the crop), pred_logits Tensor[B, K].
    crops: Tensor[B, 4], each input's pixel xyxy crop; image_sizes: Tensor[B, 2] (width, height).
    Returns B dicts {"boxes": Tensor[N, 4] pixel xyxy, "scores": Tensor[N]}, sorted by score.
    """
    return merge_windows(outputs, crops[:, None], image_sizes, nms_iou, top_k)  # one window per image


def select(boxes: Tensor, scores: Tensor, nms_iou: float | None, top_k: int | None) -> list[dict[str, Tensor]]:
    """NMS per image and top-k by score. boxes: Tensor[B, K, 4]; scores: Tensor[B, K].
    Returns B dicts of Tensor[N, 4] and Tensor[N]."""
    b, k = scores.shape
    image_of = torch.arange(b, device=boxes.device).repeat_interleave(k)  # [B*K]
    return select_flat(boxes.reshape(-1, 4), scores.reshape(-1), image_of, b, nms_iou, top_k)  # [B*K, 4], [B*K]


PRE_NMS = 1000  # NMS first looks at this many of an image's best boxes (at least 10 x top_k), see nms_top_k


def nms_top_k(boxes: Tensor, scores: Tensor, candidates: Tensor, iou: float, top_k: int) -> Tensor:
    """The first ``top_k`` survivors of greedy NMS over ``candidates`` (indices into boxes Tensor[N, 4] and
    scores Tensor[N], one image), sorted by score, without suppressing among all of them: a box's
    fate in greedy NMS depends only on higher-scoring boxes, so NMS over the best M candidates keeps
    exactly the survivors the full NMS keeps among them; once they hold top_k survivors, no lower-scoring
    box can enter the top k. M starts at max(PRE_NMS, 10 top_k) and grows by as many until that holds (the
    conv head's 7,744 priors: NMS over all of them took 169 ms, over the best 1,000 15 ms, same top 100).
    Each growth only runs NMS over the next candidates that no survivor so far suppresses (their fate
    depends on higher-scoring boxes alone), not over all M again: at NMS 0.3-0.35 (the thresholds tree
    crowns get, engine.nms_rule) the best 1,000 often hold fewer than 100 survivors."""
    order = candidates[torch.argsort(scores[candidates], descending=True, stable=True)]
    step = max(PRE_NMS, 10 * top_k)
    start, keep = 0, order[:0]
    while True:
        new = order[start:start + step]
        if len(keep):  # a box a survivor overlaps by more than ``iou`` is suppressed, whatever else
            new = new[(box_iou(boxes[new], boxes[keep]) <= iou).all(dim=1)]
        keep = torch.cat([keep, new[nms(boxes[new], scores[new], iou)]])
        start += step
        if len(keep) >= top_k or start >= len(order):
            return keep[:top_k]


def select_flat(boxes: Tensor, scores: Tensor, image_of: Tensor, num_images: int, nms_iou: float | None,
                top_k: int | None, cut: Tensor | None = None, valid: Tensor | None = None) -> list[dict[str, Tensor]]:
    """:func:`select` of the boxes Tensor[N, 4] and scores Tensor[N] of several images, image_of
    Tensor[N] naming each box's image: with ``top_k``, :func:`nms_top_k` per image; without, one batched_nms
    call for them all (``cut`` Tensor[N] travels with the kept boxes); only the boxes marked in ``valid``
    (bool Tensor[N]) are candidates."""
    candidates = torch.arange(len(scores), device=scores.device) if valid is None else valid.nonzero()[:, 0]
    if nms_iou is not None and top_k is not None:  # per image, over its best candidates first (exact)
        kept = [nms_top_k(boxes, scores, candidates[image_of[candidates] == i], nms_iou, top_k)
                for i in range(num_images)]  # a loop over images, not boxes
    else:
        if nms_iou is None:
            keep = candidates[torch.argsort(scores[candidates], descending=True, stable=True)]
        else:  # sorted by score
            keep = candidates[batched_nms(boxes[candidates], scores[candidates], image_of[candidates], nms_iou)]
        kept = [keep[image_of[keep] == i][:top_k] for i in range(num_images)]  # split the kept indices per image
    return [{"boxes": boxes[idx], "scores": scores[idx]} | ({} if cut is None else {"cut": cut[idx]}) for idx in kept]
