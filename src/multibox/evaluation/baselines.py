"""Proposal baselines: boxes from no learned localizer, to put a model's detection-rate curve (Fig. 1)
in context. Each ranks its boxes by a fixed rule; a box of rank r (0-based) among n gets the score
1 - r / n, so only the order matters.

* ``priors``: the model's K k-means priors placed on each image's center square crop, ranked by how
  often prior matching picked them in training, after the model's NMS (needs the checkpoint).
* ``sliding-window``: a multi-scale grid. Window sides are s = 2^(-i/2) of the image's shorter side
  (i = 0..8, none under 8 px), in shapes 1:1, 2:1 and 1:2 (same area); windows lie on a grid with a
  stride of half a window, spread to touch both image edges. Rank: larger scales first; within a
  scale square, then 2:1, then 1:2; within a shape, windows nearer the image center first.
* ``random``: boxes with corners drawn uniformly: x1 < x2 are two sorted uniform draws on [0, width],
  likewise y1 < y2. Image i of the split draws from ``numpy.random.default_rng([seed, i])``, so a box
  depends only on the seed and the image's position.
* ``selective-search``: OpenCV contrib's selective search in fast mode
  (``cv2.ximgproc.segmentation.createSelectiveSearchSegmentation``) on the image downscaled to at most
  500 px a side, boxes mapped back to the full image. OpenCV ranks its regions with the C library's
  unseeded ``rand()`` (Uijlings et al.'s random x hierarchy level), which Python cannot seed; we drop
  that order, remove duplicate boxes and rank by area, largest first (the top of the hierarchy first),
  ties by position. Needs the optional extra ``opencv-contrib-python-headless``.

Only ``priors`` is NMS-pruned (as the model is); the grid, random and selective-search boxes are
taken as their methods give them. Every box lies inside its image. Shapes: N boxes per image.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from multibox.boxes import center_square_crop, clip_boxes, crop_to_image
from multibox.config import BASELINES
from multibox.data import BadImage, DetectionDataset
from multibox.errors import UserError
from multibox.inference.postprocess import select

WINDOW_SCALES = tuple(2 ** (-i / 2) for i in range(9))  # of the shorter image side: 1 .. 1/16
WINDOW_SHAPES = (1.0, 2.0, 0.5)  # width / height, in rank order
MIN_WINDOW_SIDE = 8.0  # pixels
SELECTIVE_SEARCH_MAX_SIDE = 500  # pixels; selective search's cost grows with the image area


@dataclass
class BaselineInputs:
    """What the generators may use: the box budget, the seed, and for ``priors`` the checkpoint's
    priors Tensor[K, 4] (xyxy in [0, 1] of the crop) and match counts Tensor[K]."""

    num_boxes: int = 100
    seed: int = 0
    priors: Tensor | None = None
    match_counts: Tensor | None = None


def ranked(boxes: np.ndarray) -> dict[str, Tensor]:
    """Boxes float [N, 4] already in rank order -> {"boxes": Tensor[N, 4] float32, "scores": 1 - r / N}."""
    n = len(boxes)
    scores = 1.0 - np.arange(n, dtype=np.float32) / max(n, 1)
    return {"boxes": torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)), "scores": torch.from_numpy(scores)}


def window_grid(width: float, height: float, w: float, h: float) -> np.ndarray:
    """float64 [n, 4]: w x h windows at a stride of about half a window, nearest the center first."""
    xs = np.linspace(0.0, width - w, math.ceil((width - w) / (w / 2) - 1e-9) + 1)
    ys = np.linspace(0.0, height - h, math.ceil((height - h) / (h / 2) - 1e-9) + 1)
    x, y = (a.ravel() for a in np.meshgrid(xs, ys))
    boxes = np.stack([x, y, x + w, y + h], axis=1)
    distance = (x + w / 2 - width / 2) ** 2 + (y + h / 2 - height / 2) ** 2
    return boxes[np.argsort(distance, kind="stable")]


@lru_cache(maxsize=64)
def sliding_windows(width: int, height: int) -> np.ndarray:
    """float32 [n, 4]: every window of the multi-scale grid of a width x height image, in rank order."""
    short, groups = min(width, height), []
    for scale in WINDOW_SCALES:
        for shape in WINDOW_SHAPES:
            w, h = scale * short * math.sqrt(shape), scale * short / math.sqrt(shape)
            if w <= width + 1e-6 and h <= height + 1e-6 and min(w, h) >= MIN_WINDOW_SIDE:
                groups.append(window_grid(width, height, min(w, width), min(h, height)))
    boxes = np.concatenate(groups) if groups else np.array([[0.0, 0.0, width, height]])
    return np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)


def random_boxes(width: float, height: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 [n, 4]: corners drawn uniformly inside the image (two sorted draws per axis)."""
    xs = np.sort(rng.uniform(0.0, width, size=(n, 2)), axis=1)
    ys = np.sort(rng.uniform(0.0, height, size=(n, 2)), axis=1)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)


def require_selective_search():
    """The cv2 module with the contrib segmentation, or a one-line UserError saying what to install."""
    try:
        import cv2

        cv2.ximgproc.segmentation.createSelectiveSearchSegmentation  # noqa: B018 (the contrib module)
    except (ImportError, AttributeError):
        raise UserError("selective-search needs OpenCV's contrib modules: pip install opencv-contrib-python-headless "
                        "(or pip install 'multibox[baselines]')") from None
    return cv2


def selective_search_boxes(image: Image.Image, max_side: int = SELECTIVE_SEARCH_MAX_SIDE) -> np.ndarray:
    """float64 [n, 4] pixel xyxy of ``image``: distinct fast-mode selective-search boxes, largest first."""
    cv2 = require_selective_search()
    scale = min(1.0, max_side / max(image.size))
    small = image.convert("RGB")
    if scale < 1.0:
        small = small.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(np.asarray(small)[:, :, ::-1]))  # OpenCV wants BGR
    search.switchToSelectiveSearchFast()
    xywh = np.unique(np.asarray(search.process(), dtype=np.int64).reshape(-1, 4), axis=0)  # sorted by x, y, w, h
    order = np.argsort(-(xywh[:, 2] * xywh[:, 3]), kind="stable")  # largest first, ties by position
    xywh = xywh[order].astype(np.float64) * np.array([image.width / small.width, image.height / small.height] * 2)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return np.clip(boxes, 0, [image.width, image.height] * 2)


def prior_detections(priors: Tensor, match_counts: Tensor, dataset: DetectionDataset,
                     nms_iou: float = 0.5) -> list[dict[str, Tensor]]:
    """The priors-only baseline: the K priors themselves as boxes on each image's center crop, scored
    by how often prior matching picked them in training, with the same NMS as the model."""
    sizes = torch.tensor([[r.width, r.height] for r in dataset.records], dtype=torch.float32)  # [B, 2]
    crops = center_square_crop(sizes[:, 0], sizes[:, 1])  # [B, 4]
    boxes = crop_to_image(priors.float().expand(len(sizes), -1, -1), crops)  # [B, K, 4]
    boxes = clip_boxes(boxes, sizes[:, 0, None], sizes[:, 1, None])
    scores = (match_counts.float() / max(float(match_counts.sum()), 1.0)).expand(len(sizes), -1)  # [B, K]
    # Ties (priors never matched) keep k-means order; a tiny rank offset makes NMS order deterministic.
    scores = scores - torch.arange(priors.shape[0]) * 1e-9
    return select(boxes, scores, nms_iou, None)


# ----------------------------------------------------------------------------------- over a dataset split


def priors_baseline(dataset: DetectionDataset, inputs: BaselineInputs) -> list[dict[str, Tensor] | None]:
    if inputs.priors is None:
        raise UserError("the priors baseline needs a model (its checkpoint's priors)")
    counts = inputs.match_counts if inputs.match_counts is not None else torch.zeros(len(inputs.priors), dtype=torch.int64)
    return [{k: v[: inputs.num_boxes] for k, v in d.items()} for d in prior_detections(inputs.priors, counts, dataset)]


def sliding_window_baseline(dataset: DetectionDataset, inputs: BaselineInputs) -> list[dict[str, Tensor] | None]:
    return [ranked(sliding_windows(r.width, r.height)[: inputs.num_boxes]) for r in dataset.records]


def random_baseline(dataset: DetectionDataset, inputs: BaselineInputs) -> list[dict[str, Tensor] | None]:
    return [ranked(random_boxes(r.width, r.height, inputs.num_boxes, np.random.default_rng([inputs.seed, i])))
            for i, r in enumerate(dataset.records)]


def selective_search_baseline(dataset: DetectionDataset, inputs: BaselineInputs) -> list[dict[str, Tensor] | None]:
    """Selective search on every image; an unreadable image is reported and gets None."""
    require_selective_search()
    detections = []
    # the slow baseline (seconds an image): a progress bar with a count and an ETA on stderr
    for i, record in enumerate(tqdm(dataset.records, desc="selective search", unit="img", dynamic_ncols=True)):
        try:
            image = dataset.load_image(i)
        except BadImage as exc:
            if dataset.problems is not None:
                dataset.problems.report(exc.problem)
            detections.append(None)
            continue
        boxes = selective_search_boxes(image)[: inputs.num_boxes]
        detections.append(ranked(boxes * np.array([record.width / image.width, record.height / image.height] * 2)))
    return detections


GENERATORS: dict[str, Callable[[DetectionDataset, BaselineInputs], list[dict[str, Tensor] | None]]] = {
    "priors": priors_baseline, "sliding-window": sliding_window_baseline,
    "random": random_baseline, "selective-search": selective_search_baseline,
}


def baseline_detections(name: str, dataset: DetectionDataset, inputs: BaselineInputs) -> list[dict[str, Tensor] | None]:
    """Per-image ranked boxes of baseline ``name`` (None for an image that could not be read)."""
    if name not in GENERATORS:
        raise UserError(f"unknown baseline {name!r} (choose from {', '.join(BASELINES)}, or all)")
    return GENERATORS[name](dataset, inputs)


def selective_search_available() -> bool:
    try:
        require_selective_search()
    except UserError:
        return False
    return True


def resolve_baselines(spec: str, have_model: bool) -> list[str]:
    """Baseline names from "all", "none" or a comma list. "all" means every baseline that can run here
    (priors needs a model, selective-search OpenCV contrib) and says on stderr which it leaves out."""
    if spec in ("", "none"):
        return []
    if spec != "all":
        names = [n.strip() for n in spec.split(",") if n.strip()]
        for name in names:
            if name not in GENERATORS:
                raise UserError(f"baselines: unknown baseline {name!r} (choose from {', '.join(BASELINES)}, all or none)")
        return names
    left_out = {"priors": "no model", "selective-search": "OpenCV contrib is not installed"}
    keep = {"priors": have_model, "selective-search": selective_search_available()}
    for name, ok in keep.items():
        if not ok:
            print(f"baselines all: leaving out {name} ({left_out[name]})", file=sys.stderr)
    return [name for name in BASELINES if keep.get(name, True)]
