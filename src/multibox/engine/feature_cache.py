"""Training the conv head in CPU minutes: a frozen backbone's features, computed once, and windows of them.

With the backbone frozen, the head's input for a crop of an image is (up to the map's borders) the
window of the whole image's feature map under that crop, so the backbone runs once per training image
and augmentation (horizontal mirror; the 90-degree rotations with ``data.rotate``; a few input scales)
instead of once per step. Each step then trains the head on random ``window_cells`` x ``window_cells``
windows of the cached maps, with the §3 prior matching of the window's ground truth to the window's
grid priors. On two CPU cores this is the difference between a few hundred steps of a pretrained
backbone in ten minutes and thousands of head steps (docs/quality.md).

Shapes: C feature channels, G cells a side of a map, M ground-truth boxes, K = cells^2 x A priors.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from multibox.config import Config
from multibox.data import BadImage, DetectionDataset, photometric
from multibox.data.transforms import crop_resize
from multibox.engine import distributed
from multibox.engine.map_store import MapStore, disk_room
from multibox.engine.precision import resolve_device
from multibox.modeling.localizer import GridMultiBox
from multibox.modeling.matcher import match_priors

DISK_SHARE = 0.9  # spilled maps may take at most this share of the cache folder's free space
MIN_VISIBLE = 0.5  # a box keeps being a positive in a window while half of its area is inside (§4.1 crops)


@dataclass
class CachedMap:
    """One cached (image, transform, scale): features Tensor[C, G, G] (fp16) and the positive ground
    truth boxes float32[M, 4], pixel xyxy of that map's network input (G x stride pixels a side)."""

    features: Tensor
    boxes: np.ndarray


def transforms(rotate: bool, flip: bool) -> list[int]:
    """Dihedral transforms to cache: 0 (none), 4 (mirror) with ``flip``, the 90-degree rotations with ``rotate``."""
    return [t for t in range(8) if (t % 4 == 0 or rotate) and (t < 4 or flip)]


def dihedral(image: Tensor, t: int) -> Tensor:
    """Transform t of Tensor[..., H, W]: mirrored left-right when t >= 4, then rotated 90 x (t % 4) degrees
    counter-clockwise."""
    if t >= 4:
        image = image.flip(-1)
    return torch.rot90(image, t % 4, dims=(-2, -1))


def dihedral_boxes(boxes: np.ndarray, side: float, t: int) -> np.ndarray:
    """:func:`dihedral` of pixel xyxy boxes float32[M, 4] of a side x side image."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    if t >= 4:
        b = np.stack([side - b[:, 2], b[:, 1], side - b[:, 0], b[:, 3]], axis=1)
    for _ in range(t % 4):  # rot90 counter-clockwise: (x, y) -> (y, side - x)
        b = np.stack([b[:, 1], side - b[:, 2], b[:, 3], side - b[:, 0]], axis=1)
    return b


def padded_input(image: Image.Image, size: int) -> tuple[Tensor, float]:
    """The image padded to a square (black right / below) and resized to size x size, by the same
    function whole-image inference uses (:func:`multibox.data.transforms.crop_resize` of the square
    crop), so the head trains on the pixels it will see: (uint8 Tensor[3, S, S], pixels of the input
    per pixel of the image)."""
    side = max(image.width, image.height)
    return crop_resize(image, [0.0, 0.0, float(side), float(side)], size), size / side


def input_sizes(image_size: int, stride: int, scales: list[float]) -> list[int]:
    """The cached input sides: image_size x each scale, rounded to whole cells."""
    return sorted({max(stride, round(image_size * s / stride) * stride) for s in scales})


def cache_bytes(model: GridMultiBox, num_images: int, sizes: list[int], num_transforms: int,
                front: bool = False) -> int:
    """fp16 bytes of every cached map (``front``: of the backbone's finest level, partial fine-tuning)."""
    b = model.backbone
    stride, channels = (b.front_stride, b.front_channels) if front else (model.stride, b.out_channels)
    cells = sum((s // stride) ** 2 for s in sizes)
    return 2 * channels * cells * num_images * num_transforms


def cache_order(sizes: list[int], image_size: int, kinds: list[int]) -> list[tuple[int, list[int]]]:
    """(input size, transforms) passes over the images, most useful first: the configured size as is
    and mirrored, then the other sizes, then the rotations; a time budget may end caching between passes."""
    first = [k for k in kinds if k in (0, 4)]
    rest = [k for k in kinds if k not in (0, 4)]
    others = [s for s in sizes if s != image_size]
    passes = [(image_size, first)] if image_size in sizes else []
    passes += [(s, first) for s in others] + [(s, rest) for s in ([image_size] if image_size in sizes else []) + others if rest]
    return passes


@dataclass
class Views:
    """How each cached view is made: ``jitter``, the strength of :func:`multibox.data.photometric.jitter`
    applied to every view but the image itself at the configured size (each view its own draw, seeded by
    ``seed``, the image, the size and the transform); ``gray``, the share of those views turned grey;
    ``front``: cache the backbone's finest level instead of the head's input (partial fine-tuning)."""

    jitter: float = 0.0
    seed: int = 0
    gray: float = 0.0
    front: bool = False


@torch.no_grad()
def cache_maps(model: GridMultiBox, dataset: DetectionDataset, sizes: list[int], kinds: list[int],
               device: torch.device, deadline: float | None = None, max_maps: int | None = None,
               views: Views | None = None, indices: Sequence[int] | None = None, store: MapStore | None = None,
               show: bool = False) -> list[CachedMap]:
    """The backbone's maps of every readable training image x transform x input size, pass by pass
    (:func:`cache_order`); past ``deadline`` (time.monotonic()) no further pass starts, and a pass
    stops (after at least one image), so a time budget is never spent on caching alone. ``max_maps``:
    stop once that many maps are cached (a short run draws no more windows than that). ``views``: the
    photometric jitter and what is cached (:class:`Views`). ``indices``: the images to cache (default all; a
    distributed rank's shard); ``store``: where the maps live (memory up to its budget, then disk);
    ``show``: a progress bar over the backbone passes (rank 0)."""
    model.eval()
    views = Views() if views is None else views
    store = MapStore(budget=2**62) if store is None else store
    indices = range(len(dataset)) if indices is None else indices
    total = len(cache_order(sizes, model.image_size, kinds)) * len(indices)
    with tqdm(total=total, desc="caching features", unit="image", file=sys.stderr, disable=not show,
              leave=False, mininterval=1.0) as bar:
        passes = _cache_passes(model, dataset, sizes, kinds, device, deadline, max_maps, views, indices, bar)
        kept = [(store.add(c.features), c.boxes) for c in passes]  # (handle, boxes): the tensor comes after finish()
    store.finish()
    return [CachedMap(store.get(handle), boxes) for handle, boxes in kept]


def _cache_passes(model: GridMultiBox, dataset: DetectionDataset, sizes: list[int], kinds: list[int],
                  device: torch.device, deadline: float | None, max_maps: int | None, views: Views,
                  indices: Sequence[int], bar: tqdm) -> Iterator[CachedMap]:
    """Each map of :func:`cache_maps` in turn, with its stop rules (deadline, max_maps)."""
    passes, count = cache_order(sizes, model.image_size, kinds), 0
    for number, (size, group) in enumerate(passes):
        for n, i in enumerate(indices):  # per image: one backbone pass for the group's transforms
            if deadline is not None and time.monotonic() > deadline and (number or n):
                bar.clear()
                print(f"feature cache: the time budget's share for caching is spent after {count} maps "
                      f"({number} of {len(passes)} passes over the images)", file=sys.stderr)
                return
            for cached in _cache_image(model, dataset, i, size, group, device, views):
                count += 1
                yield cached
            bar.update(1)
            if max_maps is not None and count >= max_maps:
                bar.clear()
                print(f"feature cache: {count} maps are enough for this run's {max_maps} training windows",
                      file=sys.stderr)
                return


def _cache_image(model: GridMultiBox, dataset: DetectionDataset, index: int, size: int, kinds: list[int],
                 device: torch.device, views: Views) -> list[CachedMap]:
    """Image ``index``'s maps at input ``size`` under each transform of ``kinds`` (none if unreadable)."""
    try:
        image = dataset.load_image(index)
    except BadImage as exc:
        print(exc.problem, file=sys.stderr)
        return []
    record = dataset.records[index]
    positives = record.boxes[~record.ignore] * (image.width / record.width)
    pixels, scale = padded_input(image, size)
    inputs = [dihedral(pixels, t) for t in kinds]
    # the plain view at the configured size stays plain: the head also sees the photo as it is
    if views.jitter > 0 or views.gray > 0:
        inputs = [v if (t == 0 and size == model.image_size) else
                  photometric.jitter(v, views.jitter, np.random.default_rng([views.seed, index, size, t]), views.gray)
                  for v, t in zip(inputs, kinds)]
    batch = torch.stack(inputs).to(device)  # [T, 3, S, S]
    maps = (model.front(batch) if views.front else model.features(batch)).half().cpu()  # [T, C, G, G]
    return [CachedMap(maps[j], dihedral_boxes(positives * scale, size, t)) for j, t in enumerate(kinds)]


class CachedWindows(Dataset):
    """Training samples of the conv head: random windows of cached maps, keyed (index, epoch, position)
    like :class:`multibox.data.pipeline.TrainSamples` (a resumed run draws the same windows).

    Item: {"image": Tensor[C, cells, cells] float32 (the window's features, zero past the map),
    "boxes": Tensor[M, 4] xyxy in [0, 1] of the window, "prior_match": Tensor[M], "problems": []}.
    """

    def __init__(self, maps: list[CachedMap], cells: int, stride: int, priors: Tensor, seed: int = 0,
                 sharded: bool = False, store: MapStore | None = None) -> None:
        self.maps, self.cells, self.stride, self.priors, self.seed = maps, cells, stride, priors, seed
        self.sharded = sharded  # the maps are this rank's shard: its sampler draws from all of them
        self.store = store  # keeps the spilled maps' file mapped while the samples live

    def __len__(self) -> int:
        return len(self.maps)

    def window(self, entry: CachedMap, rng: np.random.Generator) -> tuple[Tensor, np.ndarray]:
        """A random window of ``entry`` (features, padded with zeros to cells x cells) and its boxes
        in the window's pixels (clipped; fewer than MIN_VISIBLE of their area inside: dropped)."""
        c, rows, cols = entry.features.shape
        oy, ox = (int(rng.integers(0, max(n - self.cells, 0) + 1)) for n in (rows, cols))
        window = torch.zeros(c, self.cells, self.cells)
        part = entry.features[:, oy : oy + self.cells, ox : ox + self.cells].float()
        window[:, : part.shape[1], : part.shape[2]] = part
        side = self.cells * self.stride
        boxes = entry.boxes - np.array([ox, oy, ox, oy], np.float32) * self.stride
        clipped = boxes.clip(0, side)
        area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        inside = np.prod((clipped[:, 2:] - clipped[:, :2]).clip(0), axis=1)
        return window, clipped[inside >= MIN_VISIBLE * area] / side

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        index, epoch, position = key
        features, boxes = self.window(self.maps[index], np.random.default_rng([self.seed, epoch, position]))
        boxes = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).reshape(-1, 4)
        return {"image": features, "boxes": boxes, "prior_match": match_priors(self.priors, boxes), "problems": []}


@torch.no_grad()
def feature_sums(maps: list[CachedMap], channels: int, after: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Per-channel sums, sums of squares and the position count over every position of every cached
    map (each passed through ``after`` first, e.g. the tuned backbone layers, giving ``channels``):
    Tensor[2C + 1] float64 (summed over ranks, they give the statistics of all the shards)."""
    sums = torch.zeros(2 * channels + 1, dtype=torch.float64)
    for m in maps:  # per map: sums in float64
        f = m.features if after is None else after(m.features[None].float())[0]
        f = f.double().flatten(1)  # [C, G*G]
        sums[:channels] += f.sum(1)
        sums[channels:-1] += f.square().sum(1)
        sums[-1] += f.shape[1]
    return sums


def stats_from_sums(sums: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation Tensor[C] from :func:`feature_sums`."""
    channels = (sums.numel() - 1) // 2
    mean = sums[:channels] / sums[-1]
    var = sums[channels:-1] / sums[-1] - mean.square()
    return mean.float(), var.clamp(min=1e-12).sqrt().float()


def plan_cache(model: GridMultiBox, num_images: int, image_size: int, scales: list[float], kinds: list[int],
               memory_budget: int, folder: Path, front: bool = False) -> list[int]:
    """The input sizes to cache: all scales, else the configured size alone, within memory (``memory_budget``
    bytes) plus the disk under ``folder`` (a share of its free space); else none (then the head trains end to
    end on image crops, and one line says why, with the numbers)."""
    room = int(DISK_SHARE * disk_room(folder))
    for sizes in (input_sizes(image_size, model.stride, scales), [image_size]):
        need = cache_bytes(model, num_images, sizes, len(kinds), front)
        if need <= memory_budget + room:
            return sizes
    need = cache_bytes(model, num_images, [image_size], len(kinds), front)
    print(f"feature cache: {num_images} images need {need / 2**30:.1f} GB of maps at {image_size} px, over "
          f"train.cache_memory_gb ({memory_budget / 2**30:.1f} GB) plus the free disk under {folder} "
          f"({room / 2**30:.1f} GB): training end to end on image crops instead (slower per step; set "
          "train.cache_dir to a larger disk, or train.cache_features: false to silence this)", file=sys.stderr)
    return []


CACHE_SHARE = 0.4  # with a --time budget, caching features may take at most this share of it


def cached_windows(cfg: Config, model: GridMultiBox, dataset: DetectionDataset) -> CachedWindows | None:
    """This process's cached-feature samples of the training split (under torchrun: its shard of the
    images, every world_size-th one), or None when the maps fit neither in memory nor on disk."""
    kinds = transforms(cfg.data.rotate, cfg.data.flip)
    rank, world_size = distributed.rank_and_size()
    shard = range(rank, len(dataset), world_size)  # each rank caches and trains on its own images
    t = cfg.train
    folder = Path(t.cache_dir) if t.cache_dir else Path(tempfile.gettempdir())
    budget, device = int(t.cache_memory_gb * 2**30), resolve_device(t.device)
    sizes = plan_cache(model, len(shard), cfg.model.image_size, list(cfg.data.cache_scales), kinds, budget, folder,
                       front=t.tune_backbone)
    if distributed.any_rank(not sizes, device):  # every rank trains the same way
        return None
    deadline = None if t.time_minutes is None else time.monotonic() + 60 * t.time_minutes * CACHE_SHARE
    windows_drawn = t.steps * t.batch_size if t.steps is not None and t.epochs is None else None  # a short run's need
    views = Views(cfg.data.cache_jitter, t.seed, cfg.data.cache_gray, front=t.tune_backbone)
    store = MapStore(budget, folder)
    maps = cache_maps(model.to(device), dataset, sizes, kinds, device, deadline, windows_drawn, views, shard, store,
                      show=rank == 0)
    model.cpu()
    say_cache(store, len(maps), len(shard), rank, world_size)
    after = model.features_from_front if t.tune_backbone else None  # the head's input: through the tuned layers
    sums = feature_sums(maps, model.backbone.out_channels, after)
    model.feature_mean, model.feature_std = stats_from_sums(distributed.sum_over_ranks(sums))
    stride = model.backbone.front_stride if t.tune_backbone else model.stride  # the cached maps' stride
    cells = t.window_cells
    return CachedWindows(maps, cells * model.stride // stride, stride, model.grid_priors(cells, cells).cpu(), t.seed,
                         sharded=world_size > 1, store=store)


def say_cache(store: MapStore, num_maps: int, num_images: int, rank: int, world_size: int) -> None:
    """One line: how many maps, for how many images, and how many bytes in memory and on disk."""
    where = f"rank {rank} of {world_size}: " if world_size > 1 else ""
    disk = f", {store.spilled_bytes / 2**20:.1f} MB on disk ({store.folder})" if store.spilled_bytes else ""
    print(f"feature cache: {where}{num_maps} maps of {num_images} images, {store.in_memory / 2**20:.1f} MB in "
          f"memory{disk}", file=sys.stderr)
