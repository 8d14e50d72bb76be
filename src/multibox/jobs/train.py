"""`multibox train`, `train-classifier` and `priors`: fit k-means priors, train a localizer or the
§4.2.1 classifier with the one training loop (:mod:`multibox.engine.trainer`).

A localizer run scores itself at each checkpoint on the validation images (the data's val split, or
training images held out when it has none) and keeps the best weights as RUN/best.pt beside the last
(RUN/last.pt): the score is the mean detection rate at 10, 25 and 100 boxes per image (Fig. 1).
RUN/results.csv and RUN/results.png (:mod:`multibox.reports.training_curves`) are redrawn at every
checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from multibox.config import Config
from multibox.data import DetectionDataset
from multibox.data.build import load_split, training_split, validation_images
from multibox.data.problems import write_problems_log
from multibox.engine import distributed
from multibox.engine.checkpoint import save_checkpoint
from multibox.engine.tasks import (
    PAPER_IMAGE_SIZE,
    check_classifier_config,
    classifier_task,
    fit_priors,
    localizer_task,
    training_samples,
)
from multibox.engine.trainer import train as run_training
from multibox.evaluation.scoring import dataset_targets, detection_rate, drop_unreadable
from multibox.inference.localizer import Localizer
from multibox.inference.predict import predict_dataset
from multibox.jobs.calibrate import calibrate_checkpoint
from multibox.reports.dataset_plots import DATASET_PNG, write_dataset_plots
from multibox.reports.training_curves import write_results

VALIDATION_KS = ("10", "25", "100")  # best.pt: the mean detection rate at these numbers of boxes


def train(cfg: Config, out_dir: str | Path | None = None, resume: bool = False, exist_ok: bool = False,
          given: dict[str, object] | None = None) -> Path:
    """`multibox train`: the localizer, validated at each checkpoint (module docstring), in the run
    folder ``out_dir`` (default runs/train, numbered when taken); see :func:`multibox.engine.trainer.train`
    for ``resume``, ``exist_ok`` and ``given``; it checks the config before any data is read."""
    last = run_training(cfg, out_dir, resume, localizer_task, validate=Validator(), exist_ok=exist_ok,
                        on_checkpoint=write_run_files, given=given)
    best = Path(last).parent / "best.pt"
    if distributed.from_env().is_main and best.exists():
        calibrate_checkpoint(best)
    return last


def write_run_files(run_dir: Path) -> None:
    """After each checkpoint: the curves (results.csv/png), every problem line so far (RUN/problems.log,
    which the terminal's one-line-per-kind summaries point to) and, once, the training split's picture
    (RUN/labels.png, :mod:`multibox.reports.dataset_plots`)."""
    write_results(run_dir)
    write_problems_log(run_dir)
    if not (run_dir / DATASET_PNG).exists():
        write_dataset_plots(training_split(Config.from_yaml(run_dir / "config.yaml")), run_dir / DATASET_PNG)


class Validator:
    """(model, the run's config) -> validation metrics ("score": the mean detection rate, and the rate
    at each of VALIDATION_KS boxes), or None when there are no validation images. The images are
    opened at the first checkpoint, from the run's config (a resumed run's, the input size resolved)."""

    def __init__(self) -> None:
        self.dataset: DetectionDataset | None = None
        self.opened = False

    def open(self, cfg: Config) -> DetectionDataset | None:
        dataset = validation_images(cfg)
        if dataset is None:
            print("no validation images (no val split, too few images to hold some out): best.pt holds the last "
                  "weights", file=sys.stderr)
        else:
            print(f"validation: {dataset.name}, {len(dataset)} images", file=sys.stderr)
        return dataset

    def __call__(self, model: torch.nn.Module, cfg: Config) -> dict[str, float] | None:
        if not self.opened:
            self.dataset, self.opened = self.open(cfg), True
        return None if self.dataset is None else detection_score(model, cfg, self.dataset)


def detection_score(model: torch.nn.Module, cfg: Config, dataset: DetectionDataset) -> dict[str, float]:
    """The detection rate of ``model`` on ``dataset`` at VALIDATION_KS boxes ("dr@K") and their mean
    ("score"), with the windows the model is configured for."""
    device = next(model.parameters()).device
    localizer = Localizer.for_config(model, cfg, device)
    detections = predict_dataset(localizer, dataset, num_workers=0)
    _, detections, targets = drop_unreadable(dataset, detections, dataset_targets(dataset))
    rates = detection_rate(detections, targets, max_k=100)["detection_rate"]
    at = {f"dr@{k}": rates.get(k, 0.0) for k in VALIDATION_KS}
    return {"score": sum(at.values()) / len(at)} | at


def priors_job(cfg: Config, out: str | Path) -> Path:
    """`multibox priors`: fit and save {"priors": Tensor[K, 4], "match_counts": Tensor[K]} to ``out``."""
    dataset = load_split(cfg, cfg.data.split)
    cfg.model.image_size = cfg.model.image_size or PAPER_IMAGE_SIZE  # the fc head's priors
    priors, counts = fit_priors(training_samples(cfg, dataset, None), cfg.model.num_boxes, cfg.train.seed)
    save_checkpoint(out, {"priors": priors, "match_counts": counts, "config": cfg.to_dict()})
    return Path(out)


def train_classifier(cfg: Config, out_dir: str | Path | None = None, resume: bool = False, exist_ok: bool = False,
                     given: dict[str, object] | None = None) -> Path:
    """`multibox train-classifier`: :func:`multibox.engine.trainer.train` with :func:`classifier_task`
    (same logging, checkpoints, resume, run folders: default runs/classifier); the checkpoints hold
    "task": "classifier"."""
    check_classifier_config(cfg)
    return run_training(cfg, out_dir, resume, classifier_task, exist_ok=exist_ok, on_checkpoint=write_run_files,
                        run_name="classifier", given=given)


__all__ = ["priors_job", "train", "train_classifier"]
