"""Budgets that survive resume (issue 22 item 4): a resumed run keeps its stop rule and the time left of its
budget unless a new one is given; the time budget ending a run is said in one line; a stopped run leaves a
best.pt."""

from __future__ import annotations

import time

import pytest

from multibox.engine import trainer
from multibox.engine.checkpoint import load_checkpoint, save_checkpoint
from multibox.engine.resume import keeps_budget, resume_config
from multibox.engine.stop import StopRule, budget_line, stop_rule
from multibox.errors import Interrupted


def stop_after(monkeypatch, step: int) -> None:
    """Ctrl-C once the run has done ``step`` steps."""
    real = trainer.train_step

    def step_or_interrupt(run, images, targets):
        if run.step == step:
            raise KeyboardInterrupt
        return real(run, images, targets)

    monkeypatch.setattr(trainer, "train_step", step_or_interrupt)


def test_a_resume_without_a_stop_rule_keeps_the_runs_own(tiny_cfg, tmp_path, monkeypatch):
    tiny_cfg.train.steps, tiny_cfg.train.checkpoint_every = 6, 100
    stop_after(monkeypatch, 3)
    with pytest.raises(Interrupted):
        trainer.train(tiny_cfg, tmp_path / "run")
    assert (tmp_path / "run" / "best.pt").exists()  # no validation yet: the weights it has, to use now
    assert load_checkpoint(tmp_path / "run" / "best.pt")["step"] == 3
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["step"] == 3 and saved["elapsed_s"] > 0
    monkeypatch.undo()
    again = tiny_cfg.from_dict(tiny_cfg.to_dict())
    again.train.steps = None  # `train --out RUN --resume`, no --steps
    trainer.train(again, tmp_path / "run", resume=True)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 6  # not a default length


def test_a_stop_rule_given_on_resume_replaces_the_runs(tiny_cfg):
    saved = tiny_cfg.from_dict(tiny_cfg.to_dict())
    saved.train.steps, saved.train.time_minutes = None, 3.0
    state = {"config": saved.to_dict(), "task": "localizer"}
    given = tiny_cfg.from_dict(tiny_cfg.to_dict())
    given.train.steps, given.train.time_minutes = None, None
    assert keeps_budget(given) and resume_config(given, state).train.time_minutes == 3.0
    given.train.steps = 50
    assert not keeps_budget(given)
    resumed = resume_config(given, state)
    assert resumed.train.steps == 50 and resumed.train.time_minutes is None


def test_the_time_left_counts_the_earlier_sessions(tiny_cfg):
    tiny_cfg.train.steps, tiny_cfg.train.time_minutes = None, 3.0
    now = time.monotonic()
    fresh = stop_rule(tiny_cfg, 10, started=now, default_steps=1000)
    resumed = stop_rule(tiny_cfg, 10, started=now, default_steps=1000, spent=120.0, progress=0.5)
    assert fresh.deadline - now == pytest.approx(180.0, abs=0.5)
    assert resumed.deadline - now == pytest.approx(60.0, abs=0.5)  # 3 minutes less the 2 spent
    assert resumed.progress(0) == pytest.approx(0.5, abs=0.01)  # the schedule goes on where it stopped


def test_a_spent_budget_is_said_and_nothing_is_trained(tiny_cfg, tmp_path, capsys):
    tiny_cfg.train.steps = 4
    trainer.train(tiny_cfg, tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    state["config"]["train"].update(steps=None, time_minutes=0.5)
    state["elapsed_s"] = 45.0  # of a 30 s budget
    save_checkpoint(tmp_path / "run" / "last.pt", state)
    again = tiny_cfg.from_dict(tiny_cfg.to_dict())
    again.train.steps = None
    capsys.readouterr()
    trainer.train(again, tmp_path / "run", resume=True)
    assert "time budget of 0.5 min is spent" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 4


def test_the_budget_ending_a_run_is_said_in_one_line(tiny_cfg, tmp_path, capsys):
    tiny_cfg.train.steps, tiny_cfg.train.time_minutes = 10**6, 0.02  # 1.2 s, far fewer than the steps
    trainer.train(tiny_cfg, tmp_path / "run")
    lines = [line for line in capsys.readouterr().err.splitlines() if "time budget" in line]
    assert len(lines) == 1 and "0.02 min spent: training stopped at step" in lines[0]
    step = load_checkpoint(tmp_path / "run" / "last.pt")["step"]
    assert step < 10**6  # the clock, not the step limit (under load set-up alone may spend the 1.2 s)


def test_budget_line_only_when_the_clock_ended_the_run(tiny_cfg):
    tiny_cfg.train.time_minutes = 1.0
    past = time.monotonic() - 1
    assert budget_line(tiny_cfg, StopRule(100, past), 40) is not None
    assert budget_line(tiny_cfg, StopRule(100, past), 100) is None  # the step limit came first
    assert budget_line(tiny_cfg, StopRule(100, None), 40) is None
