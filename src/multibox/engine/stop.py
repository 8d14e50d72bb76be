"""When training ends: a step count, a number of epochs, a wall-clock budget, agreed by every rank."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from multibox.config import Config
from multibox.engine import distributed
from multibox.errors import UserError

if TYPE_CHECKING:
    from multibox.engine.run import Run


@dataclass
class StopRule:
    """When training ends: a step count (from --steps or --epochs), a wall-clock deadline, or both."""

    max_steps: int | None
    deadline: float | None  # time.monotonic() value
    begin: float = 0.0  # time.monotonic() when the loop started: the time fraction runs from here to the deadline

    def done(self, step: int) -> bool:
        return (self.max_steps is not None and step >= self.max_steps) or self.past_deadline()

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def progress(self, step: int) -> float:
        """How much of the run is done, in [0, 1]: the larger of the step and the time fraction (the
        learning-rate schedule follows whichever limit binds)."""
        parts = [step / self.max_steps] if self.max_steps else []
        if self.deadline is not None:
            parts.append((time.monotonic() - self.begin) / max(self.deadline - self.begin, 1e-9))
        return min(1.0, max(parts, default=0.0))


def check_stop_given(cfg: Config) -> None:
    """A run whose task does not pick its own length needs a stop rule: said before any data is read."""
    t = cfg.train
    if t.steps is None and t.epochs is None and t.time_minutes is None:
        raise UserError("say how long to train: train.steps, train.epochs or train.time_minutes")


def stop_rule(cfg: Config, steps_per_epoch: int, started: float | None = None,
              default_steps: int | None = None, spent: float = 0.0, progress: float = 0.0) -> StopRule:
    """The stop rule of cfg.train; with several limits, the first reached ends training. The time
    budget counts from ``started`` (time.monotonic(), e.g. before features were cached; default now),
    less ``spent`` seconds of earlier sessions of a resumed run, whose time fraction then goes on from
    ``progress`` (the learning-rate schedule continues where it stopped). ``default_steps`` (the task's
    length from the data size) applies unless --steps or --epochs is given."""
    t = cfg.train
    if default_steps is None:
        check_stop_given(cfg)
    steps = t.steps if t.steps is not None or t.epochs is not None else default_steps
    limits = [v for v in (steps, None if t.epochs is None else math.ceil(t.epochs * steps_per_epoch)) if v is not None]
    now = time.monotonic()
    deadline = None if t.time_minutes is None else (started or now) + 60 * t.time_minutes - spent
    begin = now
    if deadline is not None and 0 < progress < 1 and deadline > now:  # (now - begin) / (deadline - begin) = progress
        begin = (now - progress * deadline) / (1 - progress)
    return StopRule(min(limits) if limits else None, deadline, begin)


def budget_line(cfg: Config, stop: StopRule, step: int) -> str | None:
    """One line when the time budget (not the step limit) ended training; None otherwise."""
    if stop.deadline is None or not stop.past_deadline() or (stop.max_steps is not None and step >= stop.max_steps):
        return None
    of = f" of {stop.max_steps}" if stop.max_steps is not None else ""
    return f"time budget of {cfg.train.time_minutes:g} min spent: training stopped at step {step}{of}"


def should_stop(stop: StopRule, run: Run) -> bool:
    """The stop rule, agreed by all ranks: the step count is the same everywhere, while the clocks are
    compared (one small all-reduce) on log steps only, so distributed runs stop within log_every steps
    of the deadline."""
    if stop.max_steps is not None and run.step >= stop.max_steps:
        return True
    if not run.world.distributed:
        return stop.past_deadline()
    if stop.deadline is None or run.step % max(1, run.cfg.train.log_every):
        return False
    return distributed.any_rank(stop.past_deadline(), run.device)
