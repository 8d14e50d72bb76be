"""`multibox train`, `train-classifier` and `priors`: fit k-means priors, train a localizer or the
§4.2.1 classifier with the one training loop (:mod:`multibox.engine.trainer`).

A localizer run scores itself at each checkpoint on the validation images (the data's val split, or
training images held out when it has none) and keeps the best weights as RUN/best.pt beside the last
(RUN/model.pt): the score is the mean detection rate at 10, 25 and 100 boxes per image (Fig. 1).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

from multibox.config import Config
from multibox.data import DetectionDataset
from multibox.data.build import load_split, validation_split
from multibox.data.subset import ImageSubset
from multibox.engine.checkpoint import save_checkpoint
from multibox.engine.tasks import (PAPER_IMAGE_SIZE, check_classifier_config, classifier_task, fit_priors,
                                   training_samples)
from multibox.engine.trainer import check_config
from multibox.engine.trainer import train as run_training
from multibox.evaluation.scoring import dataset_targets, detection_rate, drop_unreadable
from multibox.inference.localizer import Localizer
from multibox.inference.predict import predict_dataset

VALIDATION_KS = ("10", "25", "100")  # best.pt: the mean detection rate at these numbers of boxes


def train(cfg: Config, out_dir: str | Path, resume: bool = False) -> Path:
    """`multibox train`: the localizer, validated at each checkpoint (module docstring). The config is
    checked before any data is read."""
    check_config(cfg)
    return run_training(cfg, out_dir, resume, validate=validator(cfg))


def validator(cfg: Config) -> Callable[[torch.nn.Module], float] | None:
    """model -> mean detection rate on the validation images, or None when there are none."""
    dataset = validation_split(cfg)
    if dataset is None:
        print("no validation images (no val split, too few images to hold some out): best.pt is not written",
              file=sys.stderr)
        return None
    if len(dataset) > cfg.data.val_images:
        dataset = ImageSubset(dataset, list(range(cfg.data.val_images)), f"{dataset.name} (first {cfg.data.val_images})")
    said = []

    def score(model: torch.nn.Module) -> float:
        if not said:  # once, when the first checkpoint is scored
            print(f"validation: {dataset.name}, {len(dataset)} images", file=sys.stderr)
            said.append(True)
        return detection_score(model, cfg, dataset)

    return score


def detection_score(model: torch.nn.Module, cfg: Config, dataset: DetectionDataset) -> float:
    """Mean detection rate at VALIDATION_KS boxes of ``model`` on ``dataset`` (whole-image windows as configured)."""
    device = next(model.parameters()).device
    localizer = Localizer(model, cfg.model.image_size, device, windows=cfg.model.windows)
    detections = predict_dataset(localizer, dataset, num_workers=0)
    _, detections, targets = drop_unreadable(dataset, detections, dataset_targets(dataset))
    rates = detection_rate(detections, targets, max_k=100)["detection_rate"]
    return sum(rates.get(k, 0.0) for k in VALIDATION_KS) / len(VALIDATION_KS)


def priors_job(cfg: Config, out: str | Path) -> Path:
    """`multibox priors`: fit and save {"priors": Tensor[K, 4], "match_counts": Tensor[K]} to ``out``."""
    dataset = load_split(cfg, cfg.data.split)
    cfg.model.image_size = cfg.model.image_size or PAPER_IMAGE_SIZE  # the fc head's priors
    priors, counts = fit_priors(training_samples(cfg, dataset, None), cfg.model.num_boxes, cfg.train.seed)
    save_checkpoint(out, {"priors": priors, "match_counts": counts, "config": cfg.to_dict()})
    return Path(out)


def train_classifier(cfg: Config, out_dir: str | Path, resume: bool = False) -> Path:
    """`multibox train-classifier`: :func:`multibox.engine.trainer.train` with :func:`classifier_task`
    (same logging, checkpoints, resume); the checkpoint is OUT_DIR/model.pt with "task": "classifier"."""
    check_classifier_config(cfg)
    return run_training(cfg, out_dir, resume, classifier_task)


__all__ = ["priors_job", "train", "train_classifier"]
