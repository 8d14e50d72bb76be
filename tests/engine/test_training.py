"""Training end to end on tiny synthetic data: overfitting, exact resume, divergence, checkpoints."""

import json

import pytest
import torch

from multibox.engine.trainer import train
from multibox.jobs.evaluate import evaluate
from multibox.modeling.losses import MultiBoxLoss
from multibox.engine.checkpoint import load_checkpoint
from multibox.data.build import load_split
from multibox.errors import TrainingDiverged, UserError


def test_overfits_one_small_batch(tiny_cfg, tmp_path):
    """Eight images, many steps: the top 10 boxes must find every object of those images."""
    cfg = tiny_cfg
    cfg.data.flip = False
    cfg.train.optimizer, cfg.train.lr, cfg.train.steps, cfg.train.batch_size = "adam", 1e-3, 450, 8
    cfg.model.hidden_dim = 256  # room to memorise eight scenes
    cfg.model.num_boxes = load_split(cfg, "train").num_objects()  # a prior per box: k-means returns them all
    cfg.train.log_every = 1
    path = train(cfg, tmp_path / "run")
    metrics = evaluate(path, tmp_path / "eval", split="train", device="cpu")
    assert metrics["num_objects"] > 0
    assert metrics["detection_rate"]["10"] == 1.0, metrics["detection_rate"]
    trained_nms = load_checkpoint(path)["config"]["model"]["nms_iou"]  # resolved from the data when it trained
    assert 0.3 <= trained_nms <= 0.5 and metrics["nms_iou"] == trained_nms  # metrics.json says what it ran with
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] / 3
    assert {"loc", "conf", "loss", "images_per_s", "step"} <= set(log[0])


def test_resume_gives_identical_weights(tiny_cfg, tmp_path):
    tiny_cfg.train.steps = 6
    straight = load_checkpoint(train(tiny_cfg, tmp_path / "a"))
    tiny_cfg.train.steps = 3
    train(tiny_cfg, tmp_path / "b")
    tiny_cfg.train.steps = 6
    resumed = load_checkpoint(train(tiny_cfg, tmp_path / "b", resume=True))
    assert resumed["step"] == straight["step"] == 6
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    assert (tmp_path / "b" / "config.yaml").is_file()


def test_non_finite_loss_stops_with_step_and_term(tiny_cfg, tmp_path, monkeypatch):
    tiny_cfg.train.steps = 3
    original = MultiBoxLoss.forward

    def poisoned(self, outputs, targets):
        terms = original(self, outputs, targets)
        return terms | {"loc": terms["loc"] * float("nan")}

    monkeypatch.setattr(MultiBoxLoss, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 1: loss term 'loc' is nan"):
        train(tiny_cfg, tmp_path / "run")


def test_time_budget_stops_and_saves(tiny_cfg, tmp_path):
    tiny_cfg.train.time_minutes = 0.001
    state = load_checkpoint(train(tiny_cfg, tmp_path / "run"))
    assert state["step"] >= 0 and "optimizer" in state and state["model"]["priors"].shape == (16, 4)


def test_training_needs_a_stop_rule(tiny_cfg, tmp_path):
    with pytest.raises(UserError, match="train.steps"):
        train(tiny_cfg, tmp_path / "run")
