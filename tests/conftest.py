"""Shared fixtures: tiny configurations that train in seconds on a CPU."""

import pytest

from multibox.config import Config


@pytest.fixture
def tiny_cfg() -> Config:
    """A 64 x 64, K = 16 localizer on a handful of synthetic images, loading in-process."""
    cfg = Config.preset("paper")
    cfg.model.backbone, cfg.model.image_size, cfg.model.num_boxes, cfg.model.hidden_dim = "tiny", 64, 16, 64
    cfg.data.synthetic_sizes = {"train": 8, "val": 4, "test": 4}
    cfg.data.synthetic_image_size = 64
    cfg.data.num_workers = 0
    cfg.train.batch_size, cfg.train.device, cfg.train.log_every = 4, "cpu", 1
    return cfg
