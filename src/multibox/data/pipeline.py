"""Training samples: crop, resize, flip, targets in the crop's frame, prior matching in the workers.

A sample is addressed by a key (image index, epoch, position) and its randomness comes from a
generator seeded by (seed, epoch, position), never from global state, so that a run resumed at step
t draws exactly the batches an uninterrupted run would have drawn, in any number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from multibox.boxes import center_square_crop
from multibox.data.crops import clip_boxes_to_crop, decode_size_for_crop
from multibox.data.dataset import DetectionDataset, ImageRecord
from multibox.data.problems import BadImage, Problem
from multibox.data.transforms import crop_resize
from multibox.errors import UserError

T = TypeVar("T")
MAX_REPLACEMENTS = 100  # unusable images skipped in a row before giving up on the dataset


class CropSampler(Protocol):
    """Chooses a square training crop: (rng, record, sample_index) -> float[4] pixel xyxy in the image."""

    def __call__(self, rng: np.random.Generator, record: ImageRecord, sample_index: int) -> np.ndarray: ...


class MaxSquareCrop:
    """The maximal square of the image at a random offset along its long side (the whole of a square image)."""

    def __call__(self, rng: np.random.Generator, record: ImageRecord, sample_index: int) -> np.ndarray:
        side = min(record.width, record.height)
        x0 = rng.uniform(0, record.width - side)
        y0 = rng.uniform(0, record.height - side)
        return np.array([x0, y0, x0 + side, y0 + side], dtype=np.float32)


def targets_in_crop(record: ImageRecord, crop: np.ndarray, flip: bool) -> Tensor:
    """Positive ground truth of ``record`` in the crop's frame: Tensor[M', 4], xyxy in [0, 1].

    Ignored objects (difficult, crowd) and boxes keeping less than half their area inside the crop
    are no positives (:func:`multibox.data.crops.clip_boxes_to_crop` states the rule).
    """
    boxes, _, ignore = clip_boxes_to_crop(record.boxes, crop, record.ignore)
    kept = torch.from_numpy(boxes[~ignore])  # [M', 4]
    if flip:
        kept = torch.stack([1 - kept[:, 2], kept[:, 1], 1 - kept[:, 0], kept[:, 3]], dim=1)
    return kept


def load_for_crop(dataset: DetectionDataset, index: int, crop: np.ndarray, size: int) -> tuple[Image.Image, np.ndarray]:
    """Decode image ``index`` only as large as the crop needs (JPEG draft mode), and the crop rescaled
    to the decoded image's pixels."""
    record = dataset.records[index]
    image = dataset.load_image(index, decode_size_for_crop(record.width, record.height, crop, size))
    return image, np.asarray(crop, np.float64) * (image.width / record.width)


def first_readable(dataset: DetectionDataset, index: int, attempt: Callable[[int], T]) -> tuple[T, list[Problem]]:
    """attempt(i) for i = index, index + 1, ... (wrapping) until it raises no BadImage: a bad file never
    stops an epoch. Returns its result and the problems of the images skipped; MAX_REPLACEMENTS
    unreadable images in a row are a UserError."""
    skipped: list[Problem] = []
    for step in range(min(MAX_REPLACEMENTS, len(dataset))):
        try:
            return attempt((index + step) % len(dataset)), skipped
        except BadImage as exc:
            skipped.append(exc.problem)
    raise UserError(f"{dataset.name}: {len(skipped)} images in a row could not be read (last: {skipped[-1]})")


class TrainSamples(Dataset):
    """Map-style dataset of training samples keyed by (index, epoch, position).

    Each item: {"image": Tensor[3, S, S] uint8, "boxes": Tensor[M, 4] xyxy in [0, 1],
    "prior_match": Tensor[M] int64 (when ``match`` is given)}.

    match: the §3 prior matching, boxes Tensor[M, 4] -> prior index Tensor[M] (the engine passes
    :func:`multibox.modeling.matcher.match_priors` bound to the priors), run here in the data workers.
    """

    def __init__(self, dataset: DetectionDataset, image_size: int, match: Callable[[Tensor], Tensor] | None = None,
                 crop_sampler: CropSampler | None = None, flip: bool = True, seed: int = 0) -> None:
        self.dataset, self.image_size, self.match = dataset, image_size, match
        self.crop_sampler = crop_sampler or MaxSquareCrop()
        self.flip, self.seed = flip, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def draw(self, index: int, epoch: int, position: int) -> tuple[np.ndarray, bool, Tensor]:
        """The crop, flip and targets of one sample, from its record alone (no pixels decoded)."""
        rng = np.random.default_rng([self.seed, epoch, position])
        record = self.dataset.records[index]
        crop = self.crop_sampler(rng, record, epoch + index)  # cycles the §4.1 buckets per image
        flip = bool(self.flip and rng.random() < 0.5)
        return crop, flip, targets_in_crop(record, crop, flip)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Tensor]:
        """The sample of ``key``; an unusable image is reported and replaced by the next image, so a
        bad file never stops an epoch (the replaced problems travel with the item for the summary)."""
        index, epoch, position = key

        def attempt(i: int) -> tuple:
            crop, flip, boxes = self.draw(i, epoch, position)
            return (*load_for_crop(self.dataset, i, crop, self.image_size), flip, boxes)

        (image, crop, flip, boxes), skipped = first_readable(self.dataset, index, attempt)
        item = {"image": crop_resize(image, crop, self.image_size, flip), "boxes": boxes, "problems": skipped}
        if self.match is not None:
            item["prior_match"] = self.match(boxes)
        return item


def collate(items: list[dict]) -> tuple[Tensor, dict[str, Tensor], list[Problem]]:
    """Stack images, pad ground truth at the end to the batch's largest M.

    Returns images Tensor[B, 3, S, S] uint8, targets {"boxes": Tensor[B, M, 4], "count": Tensor[B],
    "prior_match": Tensor[B, M] (-1 for padding)}, and the problems of images skipped on the way.
    """
    images = torch.stack([it["image"] for it in items])
    count = torch.tensor([len(it["boxes"]) for it in items], dtype=torch.int64)
    m = int(count.max()) if len(items) else 0
    boxes = torch.zeros(len(items), m, 4)
    for b, it in enumerate(items):  # a loop over images, not boxes
        boxes[b, : len(it["boxes"])] = it["boxes"]
    targets = {"boxes": boxes, "count": count}
    if "prior_match" in items[0]:
        match = torch.full((len(items), m), -1, dtype=torch.int64)
        for b, it in enumerate(items):
            match[b, : len(it["prior_match"])] = it["prior_match"]
        targets["prior_match"] = match
    return images, targets, [p for it in items for p in it["problems"]]


class EpochBatchSampler(Sampler):
    """Endless batches of sample keys, a fresh permutation per epoch seeded by (seed, epoch).

    With world_size > 1 each rank takes every world_size-th item of the epoch's permutation
    (the DistributedSampler split); with ``sharded`` the items are already this rank's own (a shard
    of the data, as the cached features are) and each rank permutes all of them, seeded by (seed,
    epoch, rank). Either way a key's position is global (p * world_size + rank), so no two ranks
    draw the same augmentation. ``start_step`` skips batches already trained on (resume).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start_step: int = 0, sharded: bool = False) -> None:
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size, self.start_step, self.sharded = rank, world_size, start_step, sharded
        self.steps_per_epoch = max(1, (num_items if sharded else num_items // world_size) // batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start_step
        while True:
            epoch, offset = divmod(step, self.steps_per_epoch)
            if self.sharded:
                mine = np.random.default_rng([self.seed, epoch, self.rank]).permutation(self.num_items)
            else:
                mine = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)[self.rank :: self.world_size]
            if len(mine) < self.batch_size:  # tiny datasets: repeat the permutation to fill a batch
                mine = np.resize(mine, self.batch_size)
            for b in range(offset, self.steps_per_epoch):
                positions = range(b * self.batch_size, (b + 1) * self.batch_size)
                yield [(int(mine[p]), epoch, p * self.world_size + self.rank) for p in positions]
            step = (epoch + 1) * self.steps_per_epoch

    def __len__(self) -> int:
        return self.steps_per_epoch


class CenterCropSamples(Dataset):
    """Inference inputs for a dataset: the maximal center square (§4.2.2) of each image, resized.

    Item i: (image Tensor[3, S, S] uint8, crop Tensor[4] pixel xyxy, size Tensor[2] (width, height), ok).
    """

    def __init__(self, dataset: DetectionDataset, image_size: int) -> None:
        self.dataset, self.image_size = dataset, image_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, bool]:
        """(input, crop, size, ok): an unusable image is reported and comes back blank with ok=False,
        so the evaluation can leave it out and say so."""
        record = self.dataset.records[index]
        size = torch.tensor([record.width, record.height], dtype=torch.float32)
        crop = center_square_crop(size[0], size[1])
        try:
            image, scaled = load_for_crop(self.dataset, index, crop.numpy(), self.image_size)
        except BadImage:
            return torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8), crop, size, False
        return crop_resize(image, scaled, self.image_size), crop, size, True
