"""The record of one training run (:class:`Run`): task, optimizer, device, precision, step and the best
validation score, with the checkpoints it writes. In a module of its own so that the loop
(:mod:`multibox.engine.trainer`) and its helpers (resume, step_log, stop) all import it from below.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from multibox.config import Config
from multibox.engine import distributed
from multibox.engine.checkpoint import save_checkpoint
from multibox.engine.precision import Precision
from multibox.engine.run_dir import LAST
from multibox.engine.tasks import Task


@dataclass
class Run:
    """Everything a training run holds. ``model`` is the plain network (checkpoints, clipping);
    ``net`` is what the step calls: the model, in DDP when distributed, compiled when asked."""

    cfg: Config
    out: Path
    task: Task
    optimizer: torch.optim.Optimizer
    device: torch.device
    precision: Precision
    world: distributed.World = field(default_factory=distributed.World)
    step: int = 0
    net: torch.nn.Module | None = None
    best_score: float = -math.inf  # the best validation score so far (best.pt's); kept in last.pt
    best_step: int | None = None  # the step best.pt holds
    saved_step: int | None = None  # the step of the last last.pt this session wrote (or resumed from)
    elapsed_before: float = 0.0  # seconds earlier sessions of a resumed run spent (its time budget keeps counting)
    progress: float = 0.0  # share of the stop rule done (engine.stop.StopRule.progress), saved for a resumed budget
    session_start: float = field(default_factory=time.monotonic)  # when this session's train() began

    def elapsed(self) -> float:
        """Wall-clock seconds the run has trained in all its sessions, set-up included."""
        return self.elapsed_before + time.monotonic() - self.session_start

    @property
    def model(self) -> torch.nn.Module:
        return self.task.model

    def weights_only(self) -> dict:
        """A checkpoint to ship: weights, config, step and the task's extras (priors are in the weights)."""
        return {"task": self.task.kind, "model": self.model.state_dict(), "config": self.cfg.to_dict(),
                "step": self.step} | self.task.extras

    def checkpoint(self, rng_states: list[torch.Tensor]) -> dict:
        return {"task": self.task.kind, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "config": self.cfg.to_dict(), "step": self.step, "torch_rng": rng_states[0],
                "torch_rng_ranks": rng_states, "world_size": self.world.world_size,
                "grad_scaler": self.precision.scaler.state_dict(), "best_score": self.best_score,
                "best_step": self.best_step, "elapsed_s": self.elapsed(), "progress": self.progress} | self.task.extras

    def save(self, gather: bool = True) -> Path:
        """Every rank calls it; rank 0 writes, the others wait until the file is complete.

        gather=False (Ctrl-C) skips the collectives, which could hang when other ranks are gone; the
        checkpoint then holds rank 0's RNG state only.
        """
        path = self.out / LAST
        rng_states = distributed.gather_objects(torch.get_rng_state()) if gather else [torch.get_rng_state()]
        if self.world.is_main:
            save_checkpoint(path, self.checkpoint(rng_states))
        self.saved_step = self.step
        if gather:
            distributed.barrier()
        return path
