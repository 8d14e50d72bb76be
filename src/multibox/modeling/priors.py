"""Box priors: k-means over the training set's ground-truth boxes (§3 "Training Details").

The paper's head (``kmeans_priors``): each box is a 4-D vector of normalized corner coordinates (xyxy
in [0, 1] of the training crop) and clusters use the L2 distance, as the paper describes. The K
centroids become the priors the network learns residuals to, and the slots that prior matching
assigns ground truth to.

The convolutional head (``kmeans_shapes``, ``grid_priors``): priors tied to the cells of a feature map
(MultiBox v2, SSD), A shapes per cell from k-means on the boxes' (width, height), so K = G x G x A and
the same head serves any image size.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

CHUNK = 65536  # rows of the [N, K] distance matrix computed at once, to bound memory for large N
MAX_POINTS = 200_000  # k-means runs on a random subsample of larger box sets (seconds, not minutes)


class TooFewBoxes(ValueError):
    """Fewer distinct training boxes than priors asked for: k-means cannot make more centres than points."""


def _sq_dist_to_nearest(points: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """For points Tensor[N, 4] and centroids Tensor[K, 4]: (min squared distance [N], argmin [N])."""
    dists, idx = [], []
    for chunk in points.split(CHUNK):
        d = torch.cdist(chunk, centroids).square()  # [n, K]
        m = d.min(dim=1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists), torch.cat(idx)


def _kmeans_pp_init(points: Tensor, k: int, rng: np.random.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre drawn with prob. ~ D(x)^2."""
    centroids = points[rng.integers(len(points))][None]  # [1, 4]
    nearest = torch.cdist(points, centroids).square()[:, 0]  # [N]
    for _ in range(1, k):
        cumulative = np.cumsum(nearest.double().numpy())
        if cumulative[-1] <= 0:  # every point already coincides with a centre
            pick = int(rng.integers(len(points)))
        else:  # inverse-CDF draw; searchsorted avoids rng.choice's exact-sum-to-1 check
            pick = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(points) - 1)
        centroids = torch.cat([centroids, points[pick][None]])
        nearest = torch.minimum(nearest, (points - points[pick]).square().sum(dim=1))
    return centroids


def kmeans(points: Tensor, k: int, seed: int = 0, iters: int = 100, tol: float = 1e-7) -> Tensor:
    """k centroids Tensor[k, D] of points Tensor[N, D] (N > k): k-means++ seeding, Lloyd iterations,
    L2; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    centroids = _kmeans_pp_init(points, k, rng)
    for _ in range(iters):
        _, assign = _sq_dist_to_nearest(points, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).float()[:, None]
        # An emptied cluster keeps its old centre rather than collapsing to the origin.
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        shift = float((updated - centroids).square().sum(dim=1).max())
        centroids = updated
        if shift < tol:
            break
    return centroids


def _distinct_points(boxes: Tensor | np.ndarray, dim: int, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """(points Tensor[N, dim] subsampled to MAX_POINTS, their distinct rows); TooFewBoxes below k."""
    rng = np.random.default_rng(seed)
    points = torch.as_tensor(np.asarray(boxes), dtype=torch.float32).reshape(-1, dim)
    if len(points) > MAX_POINTS:
        points = points[torch.from_numpy(rng.choice(len(points), MAX_POINTS, replace=False))]
    distinct = torch.unique(points, dim=0)
    if len(distinct) < k:
        raise TooFewBoxes(f"only {len(distinct)} distinct training boxes for {k} priors")
    return points, distinct


def kmeans_priors(boxes: Tensor | np.ndarray, k: int, seed: int = 0, iters: int = 100, tol: float = 1e-7) -> Tensor:
    """K prior boxes from k-means over box corners (§3), deterministic for a seed.

    boxes: Tensor[N, 4], xyxy in [0, 1]. Returns Tensor[K, 4], xyxy in [0, 1], sorted by area so that
    the order is reproducible. More than MAX_POINTS boxes are subsampled (uniformly, seeded). Exactly K
    distinct boxes become the priors; fewer raise :class:`TooFewBoxes` (never padded with random boxes).
    """
    points, distinct = _distinct_points(boxes, 4, k, seed)
    if len(distinct) == k:
        return _sort_by_area(distinct)
    return _sort_by_area(kmeans(points, k, seed, iters, tol))


def kmeans_shapes(sizes: Tensor | np.ndarray, k: int, seed: int = 0) -> Tensor:
    """A = k prior shapes Tensor[k, 2] (width, height) from k-means over the training boxes' sizes
    Tensor[N, 2] (in the network input's pixels), sorted by area: the boxes each cell proposes."""
    points, distinct = _distinct_points(sizes, 2, k, seed)
    shapes = distinct if len(distinct) == k else kmeans(points, k, seed)
    return shapes[torch.argsort(shapes.prod(1), stable=True)].contiguous()


def grid_priors(grid: tuple[int, int], stride: float, shapes: Tensor, frame: tuple[float, float]) -> Tensor:
    """The priors of a feature map of grid (rows, cols) cells at ``stride`` pixels: per cell (row-major),
    A = len(shapes) boxes of those (width, height) centred on the cell's centre, xyxy normalized by
    frame (width, height) in pixels. Returns Tensor[rows * cols * A, 4], in the conv head's order."""
    ys = (torch.arange(grid[0], dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(grid[1], dtype=torch.float32) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # [G_r, G_c]
    centre = torch.stack([cx, cy], dim=-1)[:, :, None, :]  # [G_r, G_c, 1, 2]
    half = shapes.float().to(centre)[None, None] / 2  # [1, 1, A, 2]
    boxes = torch.cat([centre - half, centre + half], dim=-1)  # [G_r, G_c, A, 4]
    scale = torch.tensor([frame[0], frame[1], frame[0], frame[1]], dtype=torch.float32)
    return (boxes / scale).reshape(-1, 4)  # [G_r*G_c*A, 4]


def _sort_by_area(priors: Tensor) -> Tensor:
    area = (priors[:, 2] - priors[:, 0]) * (priors[:, 3] - priors[:, 1])
    order = torch.argsort(area * 4096 + priors[:, 0] + priors[:, 1] / 64, stable=True)
    return priors[order].contiguous()
