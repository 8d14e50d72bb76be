"""Training crops for the C+1-way classifier (§4.2.1), drawn on the fly from any dataset reader.

The paper trains the classifier on "crops overlapping some object with at least 0.5 Jaccard overlap
similarity ... labeled with one of the 20 VOC object classes" and "negative crops that have at most
0.2 Jaccard similarity with any of the object boxes ... labeled with the special background class",
twice as many negatives as positives. Here:

* **Labels** (:func:`label_windows`): classes keep the dataset's indices 0..C-1; **background is C**
  (the last logit). A window whose highest-IoU object is a non-ignored one with IoU >= 0.5 takes that
  object's class. A window whose IoU with *every* object, ignored ones (VOC difficult, COCO crowd)
  included, is <= 0.2 is background. Anything else (0.2 < IoU < 0.5, or closest to an ignored object)
  is no training example. So ignored objects are never positives, and a negative never overlaps them
  by more than 0.2 either.
* **Positives**: a non-ignored object is picked uniformly, its box jittered (log-normal scale, normal
  shift, ``POS_CANDIDATES`` at once) and the first candidate labelled with a class is kept; if none
  is, the object's own box (IoU 1) is used.
* **Negatives**: random windows (side 10-100 % of the image, log-uniform; aspect 1:3 to 3:1; uniform
  position), up to ``NEG_ROUNDS`` x ``NEG_CANDIDATES`` of them; the first labelled background is kept.
  The rule is Jaccard, as in the paper: a small window *inside* a large object has IoU <= 0.2 and is
  background -- a localizer box like it is a false positive at test time, so that is the right answer.
  Hence even an image filled by one object has negatives; none are found only when objects cover the
  image densely at every scale (or by bad luck in the bounded search).
* **Impossible samples**: when an image yields no negative, or a positive is asked of an image with
  no non-ignored object, the sample moves on to the next image (as for an unreadable image), at most
  ``MAX_REPLACEMENTS`` images; a dataset where that fails is a UserError naming the crop kind.
* **Ratio**: sample position p is a positive iff floor((p + 1) f) > floor(p f) with
  f = 1 / (1 + negatives_per_positive), so every run of 1 + r positions holds exactly the 1:r mix
  (1:2 as in the paper by default), independently of the image order.
* **Pixels**: the classifier sees the window's square region (:func:`multibox.data.regions.square_regions`,
  "max" by default) cut by :func:`multibox.data.regions.crop_regions`, as the detector will show it at test
  time; the label is decided on the window itself, the stand-in for a localizer box.

Keys and randomness follow :mod:`multibox.data.pipeline`: a sample is keyed by (image index, epoch,
position) and draws everything from ``np.random.default_rng([seed, epoch, position])``, so a resumed
run sees exactly the crops of an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from multibox.boxes import box_iou
from multibox.data.dataset import DetectionDataset, ImageRecord
from multibox.data.pipeline import MAX_REPLACEMENTS, first_readable, load_for_crop
from multibox.data.problems import Problem
from multibox.data.regions import crop_regions, image_tensor, square_regions
from multibox.errors import UserError

POSITIVE_IOU = 0.5  # §4.2.1: positives overlap an object by at least 0.5 Jaccard
NEGATIVE_IOU = 0.2  # §4.2.1: negatives overlap every object by at most 0.2
UNLABELLED = -1  # a window that is neither (never a training example)
POS_CANDIDATES = 16  # jittered boxes tried per positive
SCALE_JITTER, SHIFT_JITTER = 0.25, 0.15  # std of log(side scale) and of the centre shift (in box sides)
NEG_CANDIDATES, NEG_ROUNDS = 64, 4  # random windows per round, rounds before giving up on an image
NEG_MIN_SIDE = 0.1  # smallest negative window side, as a fraction of the image's sides


def label_windows(windows: Tensor, boxes: Tensor, labels: Tensor, ignore: Tensor, background: int) -> Tensor:
    """The §4.2.1 label of each window (rules in the module docstring): Tensor[N] int64.

    windows: Tensor[N, 4], boxes: Tensor[M, 4] (same pixel frame); labels: Tensor[M] int64;
    ignore: Tensor[M] bool. Returns a class 0..C-1, ``background`` (C) or ``UNLABELLED`` (-1).
    """
    if len(boxes) == 0:
        return torch.full((len(windows),), background, dtype=torch.int64)
    iou = box_iou(windows.double(), boxes.double())  # [N, M]
    best_iou, best = iou.max(dim=1)
    positive = (best_iou >= POSITIVE_IOU) & ~ignore[best]
    out = torch.where(best_iou <= NEGATIVE_IOU, background, UNLABELLED)
    return torch.where(positive, labels[best], out)


def record_label_windows(windows: np.ndarray, record: ImageRecord, background: int) -> np.ndarray:
    """:func:`label_windows` for pixel xyxy ``windows`` float[N, 4] of one record: int64 [N]."""
    return label_windows(torch.from_numpy(windows), torch.from_numpy(record.boxes), torch.from_numpy(record.labels),
                         torch.from_numpy(record.ignore), background).numpy()


def clip_to_image(windows: np.ndarray, record: ImageRecord) -> np.ndarray:
    """Pixel xyxy windows float[N, 4] truncated to the image."""
    upper = np.array([record.width, record.height, record.width, record.height], np.float64)
    return np.clip(windows, 0, upper)


def jittered_boxes(rng: np.random.Generator, box: np.ndarray, n: int) -> np.ndarray:
    """n boxes float[n, 4] around pixel xyxy ``box`` [4]: sides scaled by exp(N(0, SCALE_JITTER)),
    centre shifted by N(0, SHIFT_JITTER) box sides."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    scale = np.exp(rng.normal(0, SCALE_JITTER, (n, 2))) * [w, h]  # [n, 2]
    centre = [cx, cy] + rng.normal(0, SHIFT_JITTER, (n, 2)) * [w, h]  # [n, 2]
    return np.concatenate([centre - scale / 2, centre + scale / 2], axis=1)


def positive_window(rng: np.random.Generator, record: ImageRecord, background: int) -> tuple[np.ndarray, int] | None:
    """A window labelled with an object's class and that label, or None without a usable object."""
    usable = np.flatnonzero(~record.ignore)
    if len(usable) == 0:
        return None
    target = clip_to_image(record.boxes[rng.choice(usable)].astype(np.float64), record)
    candidates = np.concatenate([clip_to_image(jittered_boxes(rng, target, POS_CANDIDATES), record), target[None]])
    labels = record_label_windows(candidates, record, background)
    ok = np.flatnonzero((labels >= 0) & (labels != background))  # never empty in practice: the box itself
    if len(ok) == 0:
        return None
    return candidates[ok[0]], int(labels[ok[0]])


def random_windows(rng: np.random.Generator, record: ImageRecord, n: int) -> np.ndarray:
    """n windows float[n, 4] inside the image: log-uniform size, aspect 1:3 to 3:1, uniform position."""
    size = np.array([record.width, record.height], np.float64)
    side = np.exp(rng.uniform(math.log(NEG_MIN_SIDE), 0.0, n))[:, None]  # [n, 1] fraction of the image
    aspect = np.sqrt(np.exp(rng.uniform(math.log(1 / 3), math.log(3), n)))[:, None]
    wh = np.minimum(side * np.concatenate([aspect, 1 / aspect], axis=1), 1.0) * size  # [n, 2]
    x0y0 = rng.uniform(0, 1, (n, 2)) * (size - wh)
    return np.concatenate([x0y0, x0y0 + wh], axis=1)


def negative_window(rng: np.random.Generator, record: ImageRecord, background: int) -> tuple[np.ndarray, int] | None:
    """A background window (IoU <= 0.2 with every object) and ``background``, or None if none is found."""
    for _ in range(NEG_ROUNDS):
        candidates = random_windows(rng, record, NEG_CANDIDATES)
        ok = np.flatnonzero(record_label_windows(candidates, record, background) == background)
        if len(ok):
            return candidates[ok[0]], background
    return None


def is_positive(position: int, negatives_per_positive: float) -> bool:
    """Whether sample ``position`` is a positive: exactly 1 in every 1 + r consecutive positions."""
    f = 1.0 / (1.0 + negatives_per_positive)
    return math.floor((position + 1) * f + 1e-9) > math.floor(position * f + 1e-9)


class ClassifierSamples(Dataset):
    """Map-style classifier crops keyed by (index, epoch, position) (see the module docstring).

    Item: {"image": Tensor[3, S, S] uint8, "label": int (0..C-1, or C for background),
    "problems": [Problem]}.
    """

    def __init__(self, dataset: DetectionDataset, image_size: int, region: str = "max",
                 negatives_per_positive: float = 2.0, flip: bool = True, seed: int = 0) -> None:
        self.dataset, self.image_size, self.region = dataset, image_size, region
        self.negatives_per_positive, self.flip, self.seed = negatives_per_positive, flip, seed
        self.background = len(dataset.class_names)

    def __len__(self) -> int:
        return len(self.dataset)

    def draw(self, index: int, epoch: int, position: int) -> tuple[int, np.ndarray, int, bool]:
        """(image index, window float[4] pixel xyxy, label, flip) of a key, from the records alone."""
        rng = np.random.default_rng([self.seed, epoch, position])
        window = positive_window if is_positive(position, self.negatives_per_positive) else negative_window
        for attempt in range(min(MAX_REPLACEMENTS, len(self.dataset))):
            i = (index + attempt) % len(self.dataset)
            found = window(rng, self.dataset.records[i], self.background)
            if found is not None:
                return i, found[0], found[1], bool(self.flip and rng.random() < 0.5)
        kind = "object" if window is positive_window else "background (IoU <= 0.2)"
        tried = min(MAX_REPLACEMENTS, len(self.dataset))
        raise UserError(f"{self.dataset.name}: no {kind} crop in {tried} images in a row from image {index}")

    def region_of(self, index: int, window: np.ndarray) -> np.ndarray:
        """The square pixel region float[4] the classifier sees around ``window`` in image ``index``."""
        record = self.dataset.records[index]
        return square_regions(torch.from_numpy(window), record.width, record.height, self.region).numpy()

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        """The crop of ``key``; an unreadable image is reported and the key moves on to the next image."""
        index, epoch, position = key

        def attempt(start: int) -> tuple:
            i, window, label, flip = self.draw(start, epoch, position)  # draw may move on to a later image
            return (*load_for_crop(self.dataset, i, self.region_of(i, window), self.image_size), label, flip)

        (image, region, label, flip), skipped = first_readable(self.dataset, index, attempt)
        crop = crop_regions(image_tensor(image), torch.from_numpy(region)[None], self.image_size)[0]
        return {"image": crop.flip(-1) if flip else crop, "label": label, "problems": skipped}


def collate_crops(items: list[dict]) -> tuple[Tensor, dict[str, Tensor], list[Problem]]:
    """Stack crops: images Tensor[B, 3, S, S] uint8, targets {"labels": Tensor[B] int64}, problems."""
    images = torch.stack([it["image"] for it in items])
    labels = torch.tensor([it["label"] for it in items], dtype=torch.int64)
    return images, {"labels": labels}, [p for it in items for p in it["problems"]]
