"""The start-up summary of `train` (issue 22 item 3): data, input size and why, network and K, run length,
and a progress bar while features are cached."""

from __future__ import annotations

from multibox.config import Config
from multibox.engine.trainer import train


def tiny_default(image_size: int | None) -> Config:
    cfg = Config()
    cfg.model.backbone, cfg.model.image_size, cfg.model.stride, cfg.model.levels = "tiny", image_size, 16, [16]
    cfg.model.conv_hidden, cfg.model.shapes_per_cell = 16, 2
    cfg.data.synthetic_sizes = {"train": 4, "val": 2, "test": 2}
    cfg.data.synthetic_image_size, cfg.data.num_workers, cfg.data.cache_scales = 64, 0, [1.0]
    cfg.train.batch_size, cfg.train.device, cfg.train.steps, cfg.train.window_cells = 2, "cpu", 2, 4
    cfg.train.time_minutes = 5.0
    return cfg


def summary(err: str) -> dict[str, str]:
    return {line.split(":")[0]: line for line in err.splitlines() if line.split(":")[0] in ("data", "input", "model", "training")}


def test_the_summary_names_the_data_the_input_the_network_and_the_length(tmp_path, capsys):
    cfg = tiny_default(None)
    train(cfg, tmp_path / "run")
    lines = summary(capsys.readouterr().err)
    assert lines.keys() == {"data", "input", "model", "training"}
    assert "4 images" in lines["data"] and "objects" in lines["data"]
    assert f"input: {cfg.model.image_size} px (from the data: median box" in lines["input"]
    k = (cfg.model.image_size // 16) ** 2 * 2
    assert f"K = {k} priors" in lines["model"] and "frozen: features cached" in lines["model"]
    assert 0.3 <= cfg.model.nms_iou <= 0.5 and lines["model"].endswith(f", NMS at IoU {cfg.model.nms_iou:g}")
    assert "2 steps" in lines["training"] and "at most 5 min" in lines["training"]


def test_a_given_size_is_said_to_be_given(tmp_path, capsys):
    train(tiny_default(64), tmp_path / "run")
    assert "input: 64 px (given)" in summary(capsys.readouterr().err)["input"]


def test_caching_shows_a_progress_bar(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "0")
    train(tiny_default(64), tmp_path / "run")
    assert "caching features" in capsys.readouterr().err
