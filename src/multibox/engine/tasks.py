"""What a training run optimizes: the localizer (priors, MultiBoxLoss, §4.1 crops) or the classifier
(§4.2.1 crops, cross-entropy), each as a :class:`Task` the one training loop runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from multibox.config import CROPS, Config
from multibox.data import DetectionDataset
from multibox.data.classifier_samples import ClassifierSamples, collate_crops
from multibox.data.crops import CoverageCropSampler, clip_boxes_to_crop
from multibox.data.dataset import ImageRecord
from multibox.data.pipeline import CropSampler, MaxSquareCrop, TrainSamples, collate, first_readable, load_for_crop
from multibox.data.transforms import crop_resize
from multibox.engine import distributed
from multibox.engine.checkpoint import checkpoint_kind
from multibox.engine.feature_cache import cached_windows
from multibox.engine.nms_rule import auto_nms_iou
from multibox.errors import UserError
from multibox.modeling.classifier import build_classifier
from multibox.modeling.feature_maps import default_levels
from multibox.modeling.localizer import GridMultiBox, build_grid_model, build_model
from multibox.modeling.losses import ClassifierLoss, MultiBoxLoss, OneBoxPerClassLoss
from multibox.modeling.matcher import match_priors
from multibox.modeling.one_box_per_class import build_one_box_per_class, class_priors
from multibox.modeling.priors import TooFewBoxes, kmeans_priors, kmeans_shapes


def crop_sampler(cfg: Config) -> CropSampler:
    """The training-crop strategy of cfg.data.crop. "auto" follows §4.1 (coverage buckets) on real
    data and takes the whole (square) scene on the synthetic data, whose evaluation sees whole scenes."""
    crop = cfg.data.crop
    if crop == "auto":
        crop = "max_square" if cfg.data.data == "synthetic" else "coverage"
    if crop == "max_square":
        return MaxSquareCrop()
    if crop == "coverage":
        return CoverageCropSampler()
    raise UserError(f"data.crop {crop!r}: unknown crop strategy (expected {', '.join(CROPS)})")


def training_samples(cfg: Config, dataset: DetectionDataset, priors: torch.Tensor | None) -> TrainSamples:
    """The localizer's training samples; with ``priors`` Tensor[K, 4], each sample carries its §3 prior
    matching, solved in the data workers (the cost does not depend on the network)."""
    match = None if priors is None else partial(match_priors, priors)
    return TrainSamples(dataset, cfg.model.image_size, match, crop_sampler(cfg), cfg.data.flip, cfg.train.seed)


PRIOR_CROPS = 4096  # training crops drawn (no pixels decoded) to fit the priors: all boxes, as training sees them


def sample_boxes(samples: TrainSamples, crops: int | None = None) -> list[torch.Tensor]:
    """Ground truth of about ``crops`` training samples (PRIOR_CROPS by default, at least one per image;
    crop frame, xyxy in [0, 1]), drawn exactly as training draws them (§4.1 crops, flips) without
    decoding pixels: the priors see every box in the frames the network will see it in."""
    n, crops = len(samples), PRIOR_CROPS if crops is None else crops
    per_image = max(1, crops // max(n, 1))  # one each from PRIOR_CROPS images on: the paper's runs unchanged
    return [samples.draw(i, epoch, i)[2] for epoch in range(per_image) for i in range(n)]


def fit_priors(samples: TrainSamples, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means priors Tensor[K, 4] over the training boxes, and how often prior matching picks each
    (Tensor[K]; it ranks the priors for the priors-only baseline)."""
    per_image = sample_boxes(samples)
    boxes = torch.cat(per_image) if per_image else torch.zeros(0, 4)
    if len(boxes) == 0:
        raise UserError(f"{samples.dataset.name}: no ground-truth boxes to fit priors to")
    try:
        priors = kmeans_priors(boxes, k, seed)
    except TooFewBoxes as exc:
        raise UserError(f"{samples.dataset.name}: {exc}; train with --num-boxes {len(torch.unique(boxes, dim=0))} "
                        "or fewer, or add data") from None
    counts = torch.zeros(k, dtype=torch.int64)
    for gt in per_image:  # scipy assignment per sample
        idx = match_priors(priors, gt)
        counts += torch.bincount(idx[idx >= 0], minlength=k)
    return priors, counts


@dataclass
class Task:
    """What a training run optimizes: the localizer here; the classifier plugs in the same way.

    model: the network; loss: a module (outputs, targets) -> dict of unweighted terms, with
    ``weights()``; samples: a map-style dataset keyed by (index, epoch, position); collate: batches
    them into (images, targets, problems); extras: task-specific entries stored in the checkpoint.
    """

    kind: str
    model: torch.nn.Module
    loss: torch.nn.Module
    samples: torch.utils.data.Dataset
    collate: Callable
    extras: dict
    net: torch.nn.Module | None = None  # what the step calls when not the model (the head on cached features)
    default_steps: int | None = None  # the run's length when no --steps / --epochs is given
    workers: int | None = None  # DataLoader workers when not data.num_workers (0: samples too cheap to ship)


# Cached features: the default run length, from the number of cached maps (an image x transform x scale).
# Without input dropout the head overfits a small dataset when trained longer (docs/quality.md): 1,500
# steps of 8 windows suit 8 aerial tiles. Input dropout (model.feature_dropout, p) slows the fit, so the
# floor grows with it, 1,500 x (1 + 4 p): 4,500 steps at the default 0.5 (better on both the training
# photo and the next one than 3,000 or 6,000), 3,300 at 0.3 (3,000 beat 1,500 and 6,000 there). Larger
# data gets about 20 windows per map, up to 20,000 steps.
CACHED_STEPS, CACHED_WINDOWS_PER_MAP, CACHED_MAX_STEPS = 1500, 20, 20_000


def cached_steps(num_maps: int, batch_size: int, dropout: float = 0.0) -> int:
    """The default number of head steps on ``num_maps`` cached maps (``dropout``: model.feature_dropout)."""
    least = round(CACHED_STEPS * (1 + 4 * dropout))
    return int(min(max(least, math.ceil(CACHED_WINDOWS_PER_MAP * num_maps / batch_size)), CACHED_MAX_STEPS))


class HeadOnFeatures(torch.nn.Module):
    """The step's module when features are cached: the localizer's head on feature windows; with
    ``tuned`` (train.tune_backbone) windows of the backbone's finest level, run through the backbone's
    remaining layers first. The backbone's batch norm keeps its ImageNet statistics (eval mode): a batch
    of a few windows would only add noise to them."""

    def __init__(self, model: GridMultiBox, tuned: bool = False) -> None:
        super().__init__()
        self.model, self.tuned = model, tuned

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.tuned:
            features = self.model.features_from_front(features)
        return self.model.forward_features(features)

    def train(self, mode: bool = True) -> HeadOnFeatures:
        super().train(mode)
        self.model.backbone.eval()
        return self


# The input size chosen from the data (model.image_size None): the median box reaches TARGET_BOX pixels
# (objects of the size ImageNet features describe) and the 5 % smallest reach SMALL_BOX (a few cells).
TARGET_BOX, SMALL_BOX, SIZE_RANGE, SIZE_STEP = 64.0, 24.0, (128, 1024), 32
PAPER_IMAGE_SIZE = 220  # §4.2.2, the fc head's and the classifier's default


def relative_box_sides(dataset: DetectionDataset) -> np.ndarray:
    """sqrt(w h) of every positive training box over its image's longer side: float64[N]."""
    sides = [np.sqrt(np.prod(r.boxes[~r.ignore, 2:] - r.boxes[~r.ignore, :2], axis=1)) / max(r.width, r.height)
             for r in dataset.records if len(r.boxes)]
    return np.concatenate(sides) if sides else np.zeros(0)


def auto_image_size(dataset: DetectionDataset) -> int:
    """The conv head's input side S for ``dataset`` (module constants; docs/quality.md says why)."""
    rel = relative_box_sides(dataset)
    rel = rel[rel > 0]
    if not len(rel):
        return PAPER_IMAGE_SIZE
    size = max(TARGET_BOX / np.median(rel), SMALL_BOX / np.percentile(rel, 5))
    return int(np.clip(round(size / SIZE_STEP) * SIZE_STEP, *SIZE_RANGE))


# Small objects in small images: the stride-16 rule would enlarge the images by more than this factor
# (400 px aerial tiles to 704 px), and a backbone's cost grows faster than its input's area on a CPU
# (5.6x for 2.9x the pixels, measured). Then the map's stride gives instead: stride 8 at half that input
# size, the same objects over the same number of cells (docs/quality.md measures both).
UPSAMPLE_LIMIT = 1.25


def typical_side(dataset: DetectionDataset) -> float:
    """The median longer side of the training images, in pixels (0 without images)."""
    sides = [max(r.width, r.height) for r in dataset.records]
    return float(np.median(sides)) if sides else 0.0


def auto_geometry(dataset: DetectionDataset, image_size: int | None, stride: int | None) -> tuple[int, int]:
    """The conv head's (input side S, map stride) for ``dataset``: the given values, or from the data
    (:func:`auto_image_size` at stride 16; stride 8 at half of it when that would upsample the images
    by more than UPSAMPLE_LIMIT)."""
    s16 = auto_image_size(dataset)
    if stride is None:
        stride = 8 if image_size is None and s16 > UPSAMPLE_LIMIT * typical_side(dataset) else 16
    if image_size is None:
        scaled = s16 * min(stride, 16) / 16
        image_size = int(np.clip(round(scaled / SIZE_STEP) * SIZE_STEP, *SIZE_RANGE))
    return image_size, stride


def resolve_config(cfg: Config, dataset: DetectionDataset) -> Config:
    """The settings left to the data, filled in (the run saves the resolved config): the input size,
    the conv head's stride and the levels it fuses, the localizer's NMS threshold (the classifier's size
    is set by :func:`classifier_task`)."""
    m = cfg.model
    if m.head != "conv":
        m.image_size = m.image_size or PAPER_IMAGE_SIZE
        m.stride = m.stride or 16
    elif m.image_size is None or m.stride is None:
        m.image_size, m.stride = auto_geometry(dataset, m.image_size, m.stride)
    if m.head == "conv" and m.levels is None:
        m.levels = list(default_levels(m.stride))
    if m.nms_iou is None:
        m.nms_iou = auto_nms_iou(dataset)
    return cfg


def localizer_task(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
    """The DeepMultiBox localizer with the head of cfg.model.head (:func:`grid_localizer_task` for "conv");
    fills in the settings left to the data (:func:`resolve_config`). The default task of `multibox train`, so
    it hands cfg.model.kind "one-box-per-class" (`train --kind`, or a resumed run's config) to its task."""
    if cfg.model.kind != "localizer":
        return training_task(cfg, dataset, state)
    resolve_config(cfg, dataset)
    if cfg.model.head == "conv":
        return grid_localizer_task(cfg, dataset, state)
    return fc_localizer_task(cfg, dataset, state)


def fc_localizer_task(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
    """The paper's localizer: priors from k-means (or the checkpoint), MultiBoxLoss, crop samples.

    Distributed, rank 0 fits the priors and sends them to the other ranks (identical priors for the
    model and for the prior matching in every rank's data workers).
    """
    if state is None:
        fit = lambda: fit_priors(training_samples(cfg, dataset, None), cfg.model.num_boxes, cfg.train.seed)
        priors, counts = distributed.from_main(fit)
    else:
        priors, counts = state["model"]["priors"], state["prior_match_counts"]
    m = cfg.model
    model = build_model(m.backbone, priors, m.weights, m.hidden_dim, m.grid)
    samples = training_samples(cfg, dataset, priors if cfg.train.prior_matching else None)
    return Task("localizer", model, localizer_loss(cfg, cfg.train.prior_matching, priors), samples, collate,
                {"prior_match_counts": counts, "class_names": list(dataset.class_names)})


def localizer_loss(cfg: Config, prior_matching: bool, priors: torch.Tensor) -> MultiBoxLoss:
    """The localizer's objective from cfg.train (alpha, box_loss, positive_iou: :mod:`multibox.modeling.losses`)
    for predictions that start from ``priors`` Tensor[K, 4]."""
    t = cfg.train
    return MultiBoxLoss(t.alpha, prior_matching, t.box_loss, t.positive_iou, priors)


def check_classifier_config(cfg: Config) -> None:
    """Fail fast on classifier settings the run would only trip over later."""
    ratio = cfg.data.negatives_per_positive
    if not (0 <= ratio < math.inf):
        raise UserError(f"data.negatives_per_positive {ratio}: expected a finite number >= 0")


def classifier_task(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
    """The C+1-way classifier of §4.2.1: object / background crops (1 : negatives_per_positive) of the
    classifier's square regions, cross-entropy; the checkpoint stores the class names."""
    names = list(dataset.class_names)
    if state is not None and checkpoint_kind(state) != "classifier":
        raise UserError(f"the resumed checkpoint holds a {checkpoint_kind(state)}, not a classifier")
    if state is not None and list(state["class_names"]) != names:
        raise UserError(f"the resumed checkpoint's classes {state['class_names']} differ from the data's {names}")
    m, d = cfg.model, cfg.data
    m.image_size = m.image_size or PAPER_IMAGE_SIZE
    model = build_classifier(m.backbone, len(names), m.weights, m.hidden_dim, m.grid)
    samples = ClassifierSamples(dataset, m.image_size, m.classifier_region, d.negatives_per_positive, d.flip,
                                cfg.train.seed)
    return Task("classifier", model, ClassifierLoss(), samples, collate_crops, {"class_names": names})


def fit_shapes(cfg: Config, dataset: DetectionDataset) -> torch.Tensor:
    """The conv head's A prior shapes Tensor[A, 2]: k-means over the training boxes' (width, height) in
    pixels of the S x S whole-image input."""
    sizes = [(r.boxes[~r.ignore, 2:] - r.boxes[~r.ignore, :2]) * cfg.model.image_size / max(r.width, r.height)
             for r in dataset.records if len(r.boxes)]
    sizes = np.concatenate(sizes) if sizes else np.zeros((0, 2))
    if not len(sizes):
        raise UserError(f"{dataset.name}: no ground-truth boxes to fit priors to")
    try:
        return kmeans_shapes(sizes, cfg.model.shapes_per_cell, cfg.train.seed)
    except TooFewBoxes as exc:
        raise UserError(f"{dataset.name}: {exc}; set model.shapes_per_cell lower") from None


def grid_localizer_task(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
    """The conv-head localizer (priors tied to feature-map cells). With train.cache_features the
    backbone is frozen and the head trains on windows of cached maps (:mod:`multibox.engine.feature_cache`);
    otherwise end to end on §4.1 crops, matched to the full input's grid priors."""
    m = cfg.model
    shapes = distributed.from_main(lambda: fit_shapes(cfg, dataset)) if state is None else state["model"]["shapes"]
    model = build_grid_model(m.backbone, shapes, m.image_size, m.weights, m.levels, m.stride, m.conv_hidden,
                             m.conv_depth, m.conv_head, m.feature_norm, m.feature_dropout)
    cfg.model.num_boxes = int(model.num_boxes)  # the conv head's K follows its map: config.yaml records it
    extras = {"prior_match_counts": torch.zeros(model.num_boxes, dtype=torch.int64), "class_names": list(dataset.class_names)}
    windows = cached_windows(cfg, model, dataset) if cfg.train.cache_features else None
    if windows is None:
        loss = localizer_loss(cfg, True, model.priors.detach().cpu())
        return Task("localizer", model, loss, training_samples(cfg, dataset, model.priors), collate, extras)
    model.backbone.requires_grad_(False)
    if cfg.train.tune_backbone:  # partial fine-tuning: the layers after the cached level learn too
        model.backbone.back_modules().requires_grad_(True)
    loss = localizer_loss(cfg, True, windows.priors)  # every window has the priors of a cells x cells map
    return Task("localizer", model, loss, windows, collate, extras, net=HeadOnFeatures(model, cfg.train.tune_backbone),
                default_steps=cached_steps(len(windows), cfg.train.batch_size, cfg.model.feature_dropout), workers=0)


# ------------------------------------------------------------------------- one box per class (§4.4.2)


def labels_in_crop(record: ImageRecord, crop: np.ndarray) -> torch.Tensor:
    """The class ids Tensor[M'] of the positives :func:`multibox.data.pipeline.targets_in_crop` keeps, in its order."""
    _, index, ignore = clip_boxes_to_crop(record.boxes, crop, record.ignore)
    return torch.from_numpy(np.asarray(record.labels, np.int64)[index[~ignore]])


class LabelledSamples(TrainSamples):
    """:class:`TrainSamples` whose items also carry "labels": Tensor[M] int64, the class of each box."""

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        index, epoch, position = key

        def attempt(i: int) -> tuple:
            crop, flip, boxes = self.draw(i, epoch, position)
            labels = labels_in_crop(self.dataset.records[i], crop)
            return (*load_for_crop(self.dataset, i, crop, self.image_size), flip, boxes, labels)

        (image, crop, flip, boxes, labels), skipped = first_readable(self.dataset, index, attempt)
        return {"image": crop_resize(image, crop, self.image_size, flip), "boxes": boxes, "labels": labels,
                "problems": skipped}


def collate_labelled(items: list[dict]) -> tuple[torch.Tensor, dict[str, torch.Tensor], list]:
    """:func:`multibox.data.pipeline.collate` plus targets["labels"] Tensor[B, M] int64 (-1 for padding)."""
    images, targets, problems = collate(items)
    labels = torch.full(targets["boxes"].shape[:2], -1, dtype=torch.int64)
    for b, it in enumerate(items):  # a loop over images, not boxes
        labels[b, : len(it["labels"])] = it["labels"]
    return images, targets | {"labels": labels}, problems


def training_class_priors(dataset: DetectionDataset) -> torch.Tensor:
    """Each class's mean positive training box Tensor[C, 4], xyxy in [0, 1] of its image (the
    one-box-per-class network's starting boxes)."""
    records = [r for r in dataset.records if len(r.boxes)]
    scale = [np.array([r.width, r.height] * 2, np.float32) for r in records]
    boxes = [r.boxes[~r.ignore] / s for r, s in zip(records, scale)]  # a loop over images
    labels = [np.asarray(r.labels, np.int64)[~r.ignore] for r in records]
    return class_priors(torch.from_numpy(np.concatenate(boxes or [np.zeros((0, 4), np.float32)])).float(),
                        torch.from_numpy(np.concatenate(labels or [np.zeros(0, np.int64)])),
                        len(dataset.class_names))


def one_box_per_class_task(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
    """The one-box-per-class network of §4.4.2 (:mod:`multibox.modeling.one_box_per_class`): C + 1-way
    softmax and C boxes, :class:`OneBoxPerClassLoss`, on the localizer's training crops (with labels);
    the checkpoint's "task" is "one-box-per-class" and it stores the class names."""
    names = list(dataset.class_names)
    if state is not None and checkpoint_kind(state) != ONE_BOX_PER_CLASS:
        raise UserError(f"the checkpoint to resume holds a {checkpoint_kind(state)}, not a {ONE_BOX_PER_CLASS} network")
    if state is not None and list(state["class_names"]) != names:
        raise UserError(f"the checkpoint to resume has the classes {state['class_names']}, the data {names}")
    m = cfg.model
    m.image_size = m.image_size or PAPER_IMAGE_SIZE  # a whole-image fully connected network, as the fc localizer
    priors = training_class_priors(dataset) if state is None else state["model"]["priors"]
    model = build_one_box_per_class(m.backbone, priors, m.weights, m.hidden_dim, m.grid)
    samples = LabelledSamples(dataset, m.image_size, None, crop_sampler(cfg), cfg.data.flip, cfg.train.seed)
    return Task(ONE_BOX_PER_CLASS, model, OneBoxPerClassLoss(), samples, collate_labelled, {"class_names": names})


ONE_BOX_PER_CLASS = "one-box-per-class"  # the task's name in checkpoints and model.kind
TASKS = {"localizer": localizer_task, ONE_BOX_PER_CLASS: one_box_per_class_task}  # model.kind -> its task


def training_task(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
    """The task of cfg.model.kind (the resumed run's config when resuming): `multibox train --kind`."""
    return TASKS[cfg.model.kind](cfg, dataset, state)
