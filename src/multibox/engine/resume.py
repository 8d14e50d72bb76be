"""Resuming a run exactly: the checkpoint's config and the weights, optimizer, step and RNG streams."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from multibox.config import Config
from multibox.engine import distributed
from multibox.engine.checkpoint import checkpoint_config, load_checkpoint
from multibox.errors import UserError

if TYPE_CHECKING:
    from multibox.engine.trainer import Run


# Settings of how (not what) to train: a resumed run takes them from the command line.
RESUME_OVERRIDES = ("steps", "epochs", "time_minutes", "device", "log_every", "checkpoint_every", "amp",
                    "channels_last", "compile", "cuda_workers")


def resume_config(cfg: Config, state: dict) -> Config:
    """The checkpoint's config, with only the stop rule, device and logging taken from the command line."""
    resumed = checkpoint_config(state)
    for name in RESUME_OVERRIDES:
        setattr(resumed.train, name, getattr(cfg.train, name))
    return resumed


def restore(out: Path, cfg: Config, resume: bool) -> tuple[Config, dict | None]:
    """With ``resume``, the checkpoint in ``out`` and the config to continue with."""
    if not resume:
        return cfg, None
    if not (out / "model.pt").is_file():
        raise UserError(f"--resume: no checkpoint at {out / 'model.pt'}")
    state = load_checkpoint(out / "model.pt")
    return resume_config(cfg, state), state


def restore_state(run: Run, state: dict | None) -> None:
    """Weights, optimizer, step and this rank's RNG from a checkpoint; without one, give ranks > 0
    their own RNG stream (dropout masks must differ between replicas; rank 0 keeps the seed's)."""
    world = run.world
    if state is None:
        if world.rank:
            torch.manual_seed(distributed.rank_seed(run.cfg.train.seed, world.rank, 0))
        return
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.step = int(state["step"])
    if "grad_scaler" in state and run.precision.scaler.is_enabled():
        run.precision.scaler.load_state_dict(state["grad_scaler"])
    rng_states = state.get("torch_rng_ranks") or [state["torch_rng"]]
    if len(rng_states) == world.world_size:
        torch.set_rng_state(rng_states[world.rank])
    elif world.is_main:
        torch.set_rng_state(rng_states[0])
    else:  # saved by another number of processes (or at Ctrl-C): a fresh stream for this rank
        torch.manual_seed(distributed.rank_seed(run.cfg.train.seed, world.rank, run.step))
    if state.get("world_size", 1) != world.world_size and world.is_main:
        warnings.warn(f"resuming a run of {state.get('world_size', 1)} processes with {world.world_size}: "
                      f"the global batch changes, so the batches differ from an uninterrupted run", stacklevel=2)
