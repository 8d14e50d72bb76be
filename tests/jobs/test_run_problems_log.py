"""A train run's folder holds every problem line (RUN/problems.log) and the dataset picture (RUN/labels.png),
while the terminal gets one line per kind (issue 20 items 5 and 6)."""

from __future__ import annotations

import pytest
from fixtures.datasets import SpecImage, write_voc
from PIL import Image

from multibox.cli import main
from multibox.data import problems as problems_module
from multibox.data.problems import Channel
from tests.fixtures.models import tiny_config


@pytest.fixture(autouse=True)
def _fresh_channel(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MULTIBOX_VERBOSE", raising=False)
    monkeypatch.setattr(problems_module, "_CHANNEL", Channel())


def test_train_writes_problems_log_and_labels_png(tmp_path, capsys):
    boxes = [[-1, 4 * k, 12, 4 * k + 10] for k in range(6)] + [[30, 30, 50, 50]]  # 6 past the left border
    spec = [SpecImage(f"img{i}", 64, 64, boxes, [0] * len(boxes)) for i in range(3)]
    root = write_voc(tmp_path / "voc", spec)
    config = tmp_path / "tiny.yaml"
    cfg = tiny_config()
    cfg.train.steps, cfg.train.checkpoint_every = 1, 1
    cfg.save_yaml(config)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(root), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert sum("extends outside" in line for line in err.splitlines()) <= 3  # summaries, not 18 lines
    assert "box-clipped: 18 problem(s), the first: " in err
    logged = (run / "problems.log").read_text().splitlines()
    assert len(logged) == 18 and all("extends outside" in line for line in logged)
    assert f"all listed in {run / 'problems.log'}" in err  # the end-of-run summary names the file
    with Image.open(run / "labels.png") as image:
        assert image.format == "PNG" and image.width > 400
