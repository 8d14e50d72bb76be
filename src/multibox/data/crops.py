"""§4.1 training samples: square crops bucketed by how much of them the ground-truth boxes cover.

The paper: "for each image, the samples are bucketed such that for each of the ratios in the ranges of
0-5 %, 5-15 %, 15-50 %, 50-100 %, there is an equal number of samples in which the ratio covered by the
bounding boxes is in the given range", with the same number of square samples per image and about ten
million in total. Here:

* **Coverage** of a crop = area of (union of the image's boxes, clipped to the crop) / crop area,
  computed **exactly**: the box edges cut the image into a grid of rectangles (coordinate compression),
  each wholly covered or not, and a crop's covered area is a sum over those cells. Ignored boxes (VOC
  difficult, COCO crowd) count: they are objects, and a crop full of them is not background.
* **Buckets** [0, 0.05), [0.05, 0.15), [0.15, 0.5), [0.5, 1]. Sample ``i`` of an image targets bucket
  ``i % 4``, so equal numbers per bucket hold by construction whenever the bucket is reachable.
* **Search**: rejection sampling over batches of candidate squares (half of them log-uniform in size and
  uniform in position, half centred near a random box with the size that gives a coverage drawn from the
  target range), at most ``rounds`` batches.
* **Impossible bucket** (an image filled by one object has no 0-5 % square; an image without boxes has
  only 0 % squares): after the last round the candidate whose coverage is closest to the target range is
  used -- the nearest feasible bucket -- and :attr:`CoverageCropSampler.redistributed` counts it.

All randomness comes from the ``rng`` the caller passes, so a seed reproduces every crop. The sampler
keeps only fixed-size counters: memory does not grow with the number of crops drawn.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from multibox.boxes import box_area, clip_boxes, image_to_crop, valid_boxes
from multibox.data.dataset import ImageRecord

__all__ = [
    "BUCKETS",
    "CoverageCropSampler",
    "bucket_of",
    "clip_boxes_to_crop",
    "coverage_grid",
    "crop_coverage",
    "decode_size_for_crop",
    "samples_per_image",
]

#: The §4.1 coverage ranges; the last includes 1.0.
BUCKETS = ((0.0, 0.05), (0.05, 0.15), (0.15, 0.5), (0.5, 1.0))
_EDGES = np.array([b[1] for b in BUCKETS[:-1]])


def bucket_of(coverage: np.ndarray | float) -> np.ndarray:
    """Bucket index 0-3 of each coverage ratio (same shape as ``coverage``)."""
    return np.searchsorted(_EDGES, np.asarray(coverage), side="right")


def samples_per_image(num_images: int, target_total: int = 10_000_000) -> int:
    """Crops per image so that num_images x crops >= target_total, rounded up to a multiple of 4 buckets."""
    if num_images <= 0:
        return 0
    per_image = math.ceil(target_total / num_images)
    return max(len(BUCKETS), -(-per_image // len(BUCKETS)) * len(BUCKETS))


def decode_size_for_crop(width: int, height: int, crop: np.ndarray, input_size: int) -> tuple[int, int]:
    """Smallest (width, height) to decode a width x height image at so ``crop`` keeps >= input_size pixels
    a side: pass it as ``load_image(i, target_size=...)`` to let large JPEGs decode at 1/2, 1/4 or 1/8.
    """
    side = float(min(crop[2] - crop[0], crop[3] - crop[1]))
    scale = min(1.0, input_size / max(side, 1e-9))
    return min(int(width), math.ceil(width * scale)), min(int(height), math.ceil(height * scale))


def coverage_grid(boxes: np.ndarray, width: float, height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact raster of the union of boxes [M, 4] (pixel xyxy) on the grid their edges make.

    Returns xs float64 [X], ys float64 [Y] (sorted cell edges, including 0 and the image size) and
    covered float64 [X-1, Y-1] (1 where cell (i, j) lies inside some box, else 0).
    """
    b = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0, [width, height, width, height])
    b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
    xs = np.unique(np.concatenate([[0.0, width], b[:, 0], b[:, 2]]))
    ys = np.unique(np.concatenate([[0.0, height], b[:, 1], b[:, 3]]))
    ix1, ix2 = np.searchsorted(xs, b[:, 0]), np.searchsorted(xs, b[:, 2])
    iy1, iy2 = np.searchsorted(ys, b[:, 1]), np.searchsorted(ys, b[:, 3])
    # 2-D difference array: +1 at a box's top-left cell, cancelled past its right and bottom edges.
    diff = np.zeros((len(xs), len(ys)), np.int64)
    for rows, cols, sign in ((ix1, iy1, 1), (ix2, iy1, -1), (ix1, iy2, -1), (ix2, iy2, 1)):
        np.add.at(diff, (rows, cols), sign)
    depth = diff.cumsum(axis=0).cumsum(axis=1)[:-1, :-1]  # boxes covering each cell
    return xs, ys, (depth > 0).astype(np.float64)


def _overlap(edges: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[K, C] length of cell c (edges[c]..edges[c+1]) inside interval k (lo[k]..hi[k])."""
    left = np.maximum(edges[None, :-1], lo[:, None])
    right = np.minimum(edges[None, 1:], hi[:, None])
    return np.maximum(right - left, 0.0)


def crop_coverage(grid: tuple[np.ndarray, np.ndarray, np.ndarray], crops: np.ndarray) -> np.ndarray:
    """Covered share float64 [K] of each pixel xyxy crop [K, 4], from :func:`coverage_grid`."""
    xs, ys, covered = grid
    crops = np.asarray(crops, np.float64).reshape(-1, 4)
    ox = _overlap(xs, crops[:, 0], crops[:, 2])  # [K, X-1]
    oy = _overlap(ys, crops[:, 1], crops[:, 3])  # [K, Y-1]
    area = np.einsum("ki,ij,kj->k", ox, covered, oy)
    crop_area = (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1])
    return np.clip(area / np.maximum(crop_area, 1e-12), 0.0, 1.0)


def clip_boxes_to_crop(
    boxes_px: np.ndarray,
    crop: np.ndarray,
    ignore: np.ndarray | None = None,
    min_visible: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth of a crop: M image boxes -> K boxes clipped to the crop.

    Rule: each box is clipped to the crop; a box with nothing inside is dropped; a box keeping less than
    ``min_visible`` of its area is kept but marked **ignore** rather than dropped. Dropping it would make
    the loss push a prediction on a visibly present (if cut) object towards "no object"; ignoring it
    neither rewards nor penalises such a prediction, as for VOC ``difficult``. A matcher without ignore
    support can use ``boxes[~ignore]``.

    boxes_px: [M, 4] pixel xyxy in the image; crop: [4] pixel xyxy; ignore: bool [M] (default all False).
    Returns (boxes float32 [K, 4] xyxy normalized to the crop, in [0, 1]; index int64 [K] into the M
    inputs, to gather labels; ignore bool [K]).
    """
    boxes = torch.from_numpy(np.asarray(boxes_px, np.float64).reshape(-1, 4))
    normalized = image_to_crop(boxes, torch.as_tensor(np.asarray(crop, np.float64)))
    clipped = clip_boxes(normalized)
    present = valid_boxes(clipped)
    visible = box_area(clipped) / box_area(normalized).clamp(min=1e-12)
    index = torch.nonzero(present).flatten()
    old_ignore = np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, bool).reshape(-1)
    new_ignore = old_ignore[index.numpy()] | (visible[index] < min_visible).numpy()
    return clipped[index].numpy().astype(np.float32), index.numpy().astype(np.int64), new_ignore


class CoverageCropSampler:
    """``sampler(rng, record, sample_index) -> float64 [4]``: a square pixel xyxy crop inside the image.

    min_side_frac / min_side_px: smallest crop side, as a fraction of the image's short side and in pixels
        (the larger wins; never more than the short side). The largest crop is the short side.
    candidates: squares tried per round; rounds: rounds before falling back to the nearest bucket.
    Counters (numpy int64 [4], by bucket): ``requested``, ``produced``, ``redistributed`` (requested
    bucket not reached). In DataLoader workers each worker holds its own copy of them.
    """

    def __init__(self, min_side_frac: float = 0.1, min_side_px: float = 16.0, candidates: int = 32, rounds: int = 8):
        self.min_side_frac, self.min_side_px = min_side_frac, min_side_px
        self.candidates, self.rounds = candidates, rounds
        self.requested = np.zeros(len(BUCKETS), np.int64)
        self.produced = np.zeros(len(BUCKETS), np.int64)
        self.redistributed = np.zeros(len(BUCKETS), np.int64)

    def side_range(self, width: float, height: float) -> tuple[float, float]:
        short = float(min(width, height))
        return min(short, max(self.min_side_frac * short, self.min_side_px)), short

    def _uniform(self, rng: np.random.Generator, n: int, width: float, height: float) -> np.ndarray:
        lo, hi = self.side_range(width, height)
        side = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        x0 = rng.uniform(0.0, 1.0, n) * (width - side)
        y0 = rng.uniform(0.0, 1.0, n) * (height - side)
        return np.stack([x0, y0, x0 + side, y0 + side], axis=1)

    def _around_boxes(self, rng: np.random.Generator, n: int, record: ImageRecord, bucket: int) -> np.ndarray:
        """Squares near a random box, sized so that box alone would cover a target share of them."""
        lo, hi = self.side_range(record.width, record.height)
        boxes = record.boxes[rng.integers(0, len(record.boxes), n)].astype(np.float64)
        share = rng.uniform(max(BUCKETS[bucket][0], 0.01), BUCKETS[bucket][1], n)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        side = np.clip(np.sqrt(area / share), lo, hi)
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 + rng.uniform(-0.5, 0.5, n) * side
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 + rng.uniform(-0.5, 0.5, n) * side
        x0 = np.clip(centre_x - side / 2, 0.0, record.width - side)
        y0 = np.clip(centre_y - side / 2, 0.0, record.height - side)
        return np.stack([x0, y0, x0 + side, y0 + side], axis=1)

    def _candidates(self, rng: np.random.Generator, record: ImageRecord, bucket: int) -> np.ndarray:
        if len(record.boxes) == 0:
            return self._uniform(rng, self.candidates, record.width, record.height)
        half = self.candidates // 2
        uniform = self._uniform(rng, self.candidates - half, record.width, record.height)
        return np.concatenate([uniform, self._around_boxes(rng, half, record, bucket)])

    def _search(self, rng: np.random.Generator, record: ImageRecord, bucket: int) -> tuple[np.ndarray, float]:
        """(crop [4], its coverage): the first candidate in ``bucket``, else the closest one."""
        grid = coverage_grid(record.boxes, record.width, record.height)
        lo, hi = BUCKETS[bucket]
        best, best_gap, best_cov = None, np.inf, 0.0
        rounds = self.rounds if len(record.boxes) else 1  # no boxes: every square is 0 %, no need to search
        for _ in range(rounds):
            crops = self._candidates(rng, record, bucket)
            coverage = crop_coverage(grid, crops)
            gap = np.maximum(lo - coverage, 0) + np.maximum(coverage - hi, 0) + (bucket_of(coverage) != bucket) * 1e-9
            k = int(np.argmin(gap))
            if gap[k] < best_gap:
                best, best_gap, best_cov = crops[k], gap[k], float(coverage[k])
            if best_gap == 0:
                break
        return best, best_cov

    def __call__(self, rng: np.random.Generator, record: ImageRecord, sample_index: int) -> np.ndarray:
        bucket = sample_index % len(BUCKETS)
        crop, coverage = self._search(rng, record, bucket)
        got = int(bucket_of(coverage))
        self.requested[bucket] += 1
        self.produced[got] += 1
        self.redistributed[bucket] += got != bucket
        return crop

    def stats(self) -> str:
        """One line: crops requested / produced per bucket and how many were redistributed."""
        names = [f"{int(lo * 100)}-{int(hi * 100)}%" for lo, hi in BUCKETS]
        cells = [f"{n}: {p}/{r}" for n, p, r in zip(names, self.produced, self.requested)]
        return (
            "crops produced/requested per coverage bucket: "
            + ", ".join(cells)
            + f"; redistributed {int(self.redistributed.sum())}"
        )
