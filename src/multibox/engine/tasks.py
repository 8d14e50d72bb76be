"""What a training run optimizes: the localizer (priors, MultiBoxLoss, §4.1 crops) or the classifier
(§4.2.1 crops, cross-entropy), each as a :class:`Task` the one training loop runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from multibox.config import CROPS, Config
from multibox.data import DetectionDataset
from multibox.data.classifier_samples import ClassifierSamples, collate_crops
from multibox.data.crops import CoverageCropSampler
from multibox.data.pipeline import CropSampler, MaxSquareCrop, TrainSamples, collate
from multibox.engine import distributed
from multibox.engine.checkpoint import checkpoint_kind
from multibox.errors import UserError
from multibox.modeling.classifier import build_classifier
from multibox.modeling.localizer import build_model
from multibox.modeling.losses import ClassifierLoss, MultiBoxLoss
from multibox.modeling.matcher import match_priors
from multibox.modeling.priors import TooFewBoxes, kmeans_priors


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


def sample_boxes(samples: TrainSamples, crops: int = PRIOR_CROPS) -> list[torch.Tensor]:
    """Ground truth of about ``crops`` training samples (at least one per image; crop frame, xyxy in
    [0, 1]), drawn exactly as training draws them (§4.1 crops, flips) without decoding pixels: the
    priors see every box in the frames the network will see it in."""
    n = len(samples)
    per_image = max(1, math.ceil(crops / max(n, 1)))
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


def localizer_task(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
    """The DeepMultiBox localizer: priors from k-means (or the checkpoint), MultiBoxLoss, crop samples.

    Distributed, rank 0 fits the priors and sends them to the other ranks (identical priors for the
    model and for the prior matching in every rank's data workers).
    """
    if state is None:
        fit = lambda: fit_priors(training_samples(cfg, dataset, None), cfg.model.num_boxes, cfg.train.seed)  # noqa: E731
        priors, counts = distributed.from_main(fit)
    else:
        priors, counts = state["model"]["priors"], state["prior_match_counts"]
    m = cfg.model
    model = build_model(m.backbone, priors, m.weights, m.hidden_dim, m.grid)
    samples = training_samples(cfg, dataset, priors if cfg.train.prior_matching else None)
    return Task("localizer", model, MultiBoxLoss(cfg.train.alpha, cfg.train.prior_matching), samples, collate,
                {"prior_match_counts": counts, "class_names": list(dataset.class_names)})


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
        raise UserError(f"--resume: the checkpoint holds a {checkpoint_kind(state)}, not a classifier")
    if state is not None and list(state["class_names"]) != names:
        raise UserError(f"--resume: the checkpoint's classes {state['class_names']} differ from the data's {names}")
    m, d = cfg.model, cfg.data
    model = build_classifier(m.backbone, len(names), m.weights, m.hidden_dim, m.grid)
    samples = ClassifierSamples(dataset, m.image_size, m.classifier_region, d.negatives_per_positive, d.flip,
                                cfg.train.seed)
    return Task("classifier", model, ClassifierLoss(), samples, collate_crops, {"class_names": names})
