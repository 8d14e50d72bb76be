"""`multibox train`, `train-classifier` and `priors`: fit k-means priors, train a localizer or the
§4.2.1 classifier with the one training loop (:mod:`multibox.engine.trainer`)."""

from __future__ import annotations

from pathlib import Path

from multibox.config import Config
from multibox.data.build import load_split
from multibox.engine.checkpoint import save_checkpoint
from multibox.engine.tasks import check_classifier_config, classifier_task, fit_priors, training_samples
from multibox.engine.trainer import train


def priors_job(cfg: Config, out: str | Path) -> Path:
    """`multibox priors`: fit and save {"priors": Tensor[K, 4], "match_counts": Tensor[K]} to ``out``."""
    dataset = load_split(cfg, cfg.data.split)
    priors, counts = fit_priors(training_samples(cfg, dataset, None), cfg.model.num_boxes, cfg.train.seed)
    save_checkpoint(out, {"priors": priors, "match_counts": counts, "config": cfg.to_dict()})
    return Path(out)


def train_classifier(cfg: Config, out_dir: str | Path, resume: bool = False) -> Path:
    """`multibox train-classifier`: :func:`multibox.engine.trainer.train` with :func:`classifier_task` (same logging, checkpoints,
    resume); the checkpoint is OUT_DIR/model.pt with "task": "classifier"."""
    check_classifier_config(cfg)
    return train(cfg, out_dir, resume, classifier_task)


__all__ = ["priors_job", "train", "train_classifier"]
