"""Export works on every model (issue 11 item 11): the default localizer (conv head on EfficientNet-Lite0,
ImageNet weights, as `multibox train` builds it) exports to ONNX and passes the check on what users
consume, boxes in pixels and probabilities."""

from __future__ import annotations

import json

import pytest
import torch

from multibox.cli import main
from multibox.config import Config
from multibox.engine.checkpoint import save_checkpoint
from multibox.modeling.localizer import build_grid_model

pytest.importorskip("onnxruntime")


def test_default_model_exports_to_onnx_within_a_pixel(tmp_path, capsys):
    cfg = Config.preset("default")
    cfg.model.image_size, cfg.model.stride = 128, 16  # as train resolves them for images of this size
    m = cfg.model
    torch.manual_seed(0)
    shapes = torch.tensor([[16.0, 16.0], [32.0, 24.0], [24.0, 40.0], [64.0, 64.0]])
    model = build_grid_model(m.backbone, shapes, m.image_size, m.weights, m.levels, m.stride, m.conv_hidden,
                             m.conv_depth, m.conv_head)
    for p in model.head.parameters():  # a trained head is not at its init: residuals and logits far from 0
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"task": "localizer", "model": model.state_dict(), "config": cfg.to_dict(), "step": 3})
    assert main(["export", "--model", str(tmp_path), "--format", "onnx"]) == 0  # a run folder: its best.pt
    info = json.loads((tmp_path / "best.onnx.json").read_text())
    assert info["windows"] == "whole" and info["image_size"] == 128 and info["num_boxes"] == model.num_boxes
    assert info["max_box_diff_px"] <= 0.5 and info["max_score_diff"] <= 1e-3
    assert "vs the eager model" in capsys.readouterr().out
