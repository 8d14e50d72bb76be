"""Priors are fitted on every training box as the training crops see it: never random while the data
has K distinct boxes, and a tiny real dataset (3 images, 6 objects) trains."""

import torch
from fixtures.datasets import SpecImage, write_voc

from multibox.config import Config
from multibox.data.build import load_split
from multibox.engine.checkpoint import load_checkpoint
from multibox.engine.tasks import fit_priors, sample_boxes, training_samples
from multibox.engine.trainer import train


def three_photos(root):
    spec = [SpecImage("a", 120, 90, [[10, 10, 50, 40], [60, 20, 110, 80]], [0, 1]),
            SpecImage("b", 100, 100, [[5, 5, 30, 30], [40, 40, 95, 95]], [1, 1]),
            SpecImage("c", 90, 120, [[20, 30, 70, 100], [0, 0, 20, 20]], [0, 0])]
    return write_voc(root, spec)


def small_cfg(data) -> Config:
    cfg = Config.preset("paper")
    cfg.data.data, cfg.data.num_workers = str(data), 0
    cfg.model.backbone, cfg.model.image_size, cfg.model.num_boxes, cfg.model.hidden_dim = "tiny", 64, 16, 32
    cfg.train.batch_size, cfg.train.device, cfg.train.steps, cfg.train.log_every = 2, "cpu", 2, 1
    return cfg


def test_priors_see_many_crops_per_image_and_are_means_of_real_boxes(tmp_path):
    cfg = small_cfg(three_photos(tmp_path / "voc"))
    samples = training_samples(cfg, load_split(cfg, "train"), None)
    boxes = torch.cat(sample_boxes(samples))
    assert len(sample_boxes(samples)) >= 1000  # many §4.1 crops of 3 images, not one each
    assert len(torch.unique(boxes, dim=0)) > cfg.model.num_boxes
    priors, counts = fit_priors(samples, cfg.model.num_boxes, seed=0)
    assert priors.shape == (16, 4) and int(counts.sum()) == len(boxes)
    # each prior is a cluster mean of real boxes: inside the hull of the training boxes
    assert (priors.min(0).values >= boxes.min(0).values - 1e-6).all()
    assert (priors.max(0).values <= boxes.max(0).values + 1e-6).all()


def test_training_works_on_three_photos(tmp_path):
    cfg = small_cfg(three_photos(tmp_path / "voc"))
    path = train(cfg, tmp_path / "run")
    state = load_checkpoint(path)
    assert state["step"] == 2 and state["model"]["priors"].shape == (16, 4)
