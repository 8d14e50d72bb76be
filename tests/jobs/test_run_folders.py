"""Run folders that never lose work, what `train` writes and says, and resuming (issue 11 items 1-3, 8),
through `multibox.cli.main` and its exit codes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from multibox.cli import main
from multibox.engine import trainer
from tests.fixtures.models import tiny_config


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    """The tiny 64 px fc localizer (tests/fixtures/models.py) as a --config file."""
    path = tmp_path / "tiny.yaml"
    cfg = tiny_config()
    cfg.train.steps, cfg.train.log_every, cfg.train.checkpoint_every = None, 1, 2
    cfg.save_yaml(path)
    return path


def train_cli(tiny_yaml: Path, *extra: str) -> int:
    return main(["train", "--config", str(tiny_yaml), *extra])


def test_default_run_folders_are_numbered(tmp_path, tiny_yaml, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train_cli(tiny_yaml, "--steps", "1") == 0
    assert train_cli(tiny_yaml, "--steps", "1") == 0
    assert (tmp_path / "runs" / "train" / "last.pt").is_file()
    assert (tmp_path / "runs" / "train2" / "last.pt").is_file()
    out = capsys.readouterr().out
    assert "run folder runs/train2" in out and "next: multibox evaluate --model runs/train2/best.pt" in out


def test_a_used_folder_is_refused_unless_exist_ok(tmp_path, tiny_yaml, capsys):
    run = tmp_path / "run"
    assert train_cli(tiny_yaml, "--out", str(run), "--steps", "3") == 0
    before = (run / "last.pt").read_bytes()
    capsys.readouterr()
    assert train_cli(tiny_yaml, "--out", str(run), "--steps", "1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--out {run}: holds a previous run" in err and "last.pt" in err
    assert (run / "last.pt").read_bytes() == before  # nothing was written over
    assert train_cli(tiny_yaml, "--out", str(run), "--steps", "1", "--exist-ok") == 0
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps and steps[0] == 1 and max(steps) == 1  # a new log, not the old one continued


def test_last_and_best_checkpoints_and_curves(tmp_path, tiny_yaml):
    run = tmp_path / "run"
    assert train_cli(tiny_yaml, "--out", str(run), "--steps", "4") == 0
    last, best = torch.load(run / "last.pt", weights_only=False), torch.load(run / "best.pt", weights_only=False)
    assert "optimizer" in last and last["step"] == 4
    assert "optimizer" not in best and "torch_rng" not in best
    assert {"model", "config", "class_names"} <= set(best) and best["val_score"] is not None
    assert (run / "best.pt").stat().st_size < (run / "last.pt").stat().st_size
    with open(run / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "loc", "conf", "lr", "images_per_s", "val_score", "val_dr@10"} <= set(rows[0])
    assert rows[1]["val_score"] != "" and rows[0]["val_score"] == ""  # scored at the checkpoints (every 2)
    assert (run / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_says_what_it_does(tmp_path, tiny_yaml, capsys):
    run = tmp_path / "run"
    assert train_cli(tiny_yaml, "--out", str(run), "--steps", "2") == 0
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "3"]) == 0
    assert f"resuming {run} from step 2 to step 3" in capsys.readouterr().err
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 3
    before = (run / "last.pt").stat().st_mtime_ns
    assert main(["train", "--out", str(run), "--resume", "--steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "already at step 3" in err and "nothing to do" in err
    assert (run / "last.pt").stat().st_mtime_ns == before


def test_resume_with_a_conflicting_flag_is_an_error(tmp_path, tiny_yaml, capsys):
    run = tmp_path / "run"
    assert train_cli(tiny_yaml, "--out", str(run), "--steps", "1") == 0
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "2", "--backbone", "resnet18"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--backbone: the run was trained with 'tiny', not 'resnet18'" in err
    assert main(["train", "--out", str(run), "--resume", "--steps", "2", "--data", str(tmp_path)]) == 2
    assert "--data: the run was trained with 'synthetic'" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "none"), "--resume", "--steps", "2"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err


def test_ctrl_c_names_the_checkpoint_and_the_command(tmp_path, tiny_yaml, monkeypatch, capsys):
    real_step, calls = trainer.train_step, []

    def step_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", step_then_interrupt)
    run = tmp_path / "run"
    assert train_cli(tiny_yaml, "--out", str(run), "--steps", "10") == 130
    err = capsys.readouterr().err
    assert f"at step 2: saved {run / 'last.pt'}" in err and f"multibox train --out {run} --resume" in err
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 2


def test_ctrl_c_in_evaluate_says_nothing_was_written(tmp_path, tiny_yaml, monkeypatch, capsys):
    run = tmp_path / "run"
    assert train_cli(tiny_yaml, "--out", str(run), "--steps", "1") == 0
    import multibox.jobs.evaluate as evaluate_job

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_job, "predict_dataset", interrupted)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run / "last.pt"), "--out", str(tmp_path / "ev")]) == 130
    assert "nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()


def test_sigterm_saves_a_checkpoint(tmp_path, tiny_yaml):
    """What schedulers and `docker stop` send: the run saves last.pt and says how to continue."""
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "multibox.cli", "train", "--config", str(tiny_yaml), "--out", str(run),
                             "--steps", "100000"], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / "log.jsonl").is_file():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    step = torch.load(run / "last.pt", weights_only=False)["step"]
    assert step >= 1 and f"at step {step}: saved" in err
