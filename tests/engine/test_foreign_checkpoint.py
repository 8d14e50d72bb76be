"""Another project's checkpoint (a dict with model, config and epoch entries) given to every command that
loads one: one line saying what the file holds and what a multibox checkpoint needs, exit 2 (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multibox.cli import main
from multibox.engine.checkpoint import load_checkpoint
from multibox.errors import UserError
from tests.fixtures.models import train_tiny


def foreign(path: Path) -> Path:
    torch.save({"model": {"fc.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2)}, "config": {}, "epoch": 3}, path)
    return path


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), (90, 120, 60)).save(path)
    return path


@pytest.mark.parametrize("command", [
    ["detect", "--model", "{model}", "{photo}"],
    ["evaluate", "--model", "{model}", "--out", "{tmp}/ev", "--baselines", "none"],
    ["export", "--model", "{model}", "--format", "torchscript", "--out", "{tmp}/m.ts"],
])
def test_foreign_checkpoint_is_one_line(tmp_path, photo, capsys, command):
    model = foreign(tmp_path / "foreign.pt")
    args = [a.format(model=model, photo=photo, tmp=tmp_path) for a in command]
    assert main(args) == 2
    line = one_line(capsys.readouterr().err)
    assert str(model) in line
    assert "it holds model, config, epoch" in line
    assert "lacks config.model, model.priors" in line


def test_foreign_checkpoint_resumed_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    foreign(run / "last.pt")
    assert main(["train", "--out", str(run), "--resume", "--steps", "1"]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{run / 'last.pt'}: not a resumable multibox checkpoint" in line
    assert "optimizer, step, torch_rng" in line


def test_a_shipped_model_is_not_resumable_but_loads(tmp_path):
    model, _ = train_tiny(tmp_path / "m")
    best = torch.load(model, weights_only=True)
    shipped = tmp_path / "shipped.pt"
    torch.save({k: v for k, v in best.items() if k not in ("optimizer", "torch_rng", "torch_rng_ranks")}, shipped)
    assert load_checkpoint(shipped)["step"] == best["step"]
    with pytest.raises(UserError, match=r"lacks optimizer, torch_rng"):
        load_checkpoint(shipped, resumable=True)
