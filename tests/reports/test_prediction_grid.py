"""evaluate's OUT/val_pred.jpg: ground truth | prediction pairs, small images upscaled, only confident boxes."""

import numpy as np
import pytest
import torch
from fixtures.models import tiny_config
from PIL import Image

from multibox.cli import main
from multibox.data.synthetic import SyntheticDataset
from multibox.engine.trainer import train
from multibox.reports.plots import AGNOSTIC_COLOR, GT_COLOR, PALETTE
from multibox.reports.prediction_grid import GAP, PANE_SIDE, prediction_pair, write_prediction_grid


@pytest.fixture
def dataset():
    return SyntheticDataset("test", size=3, image_size=64, seed=5)


def test_pair_upscales_and_draws_only_confident_predictions(dataset):
    record = dataset.records[0]
    strong = torch.tensor([[4.0, 4, 36, 36]])
    det = {"boxes": torch.cat([strong, torch.tensor([[40.0, 40, 60, 60]])]), "scores": torch.tensor([0.9, 0.1])}
    pair = prediction_pair(dataset.load_image(0), record, det, list(dataset.class_names))
    assert pair.width == 2 * PANE_SIDE + GAP and pair.height > PANE_SIDE  # 64 px -> 400 px panes, titles above
    pixels = np.asarray(pair)
    title = pair.height - PANE_SIDE
    pred = pixels[title:, PANE_SIDE + GAP :]  # the prediction pane, upscaled 400 / 64 = 6.25 times
    assert (pred[int(20 * 6.25), int(4 * 6.25) + 1] == AGNOSTIC_COLOR).all()  # left edge of the strong box
    assert not (pred[int(50 * 6.25), int(40 * 6.25) + 1] == AGNOSTIC_COLOR).all()  # the 0.1 box is not drawn
    truth = pixels[title:, :PANE_SIDE]
    colours = {PALETTE[c % len(PALETTE)] for c in record.labels.tolist()}
    drawn = {tuple(p) for p in truth.reshape(-1, 3)}
    assert len(record.boxes) and colours <= drawn and GT_COLOR not in colours  # each class in its colour


def test_grid_skips_unreadable_images_and_lays_out_pairs(dataset, tmp_path):
    det = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}
    path = write_prediction_grid(dataset, [det, None, det], tmp_path)
    grid = Image.open(path)
    assert path.name == "val_pred.jpg" and grid.width > 4 * PANE_SIDE and PANE_SIDE < grid.height < 2 * PANE_SIDE
    assert write_prediction_grid(dataset, [None, None, None], tmp_path / "none") is None


def test_evaluate_writes_the_prediction_grid(tmp_path):
    cfg = tiny_config()
    cfg.train.steps = 1
    model = train(cfg, tmp_path / "run")
    assert main(["evaluate", "--model", str(model), "--out", str(tmp_path / "ev"), "--device", "cpu",
                 "--baselines", "none"]) == 0
    grid = Image.open(tmp_path / "ev" / "val_pred.jpg")
    assert grid.height >= 2 * PANE_SIDE  # the 4 synthetic test images: two rows of pairs, each upscaled
