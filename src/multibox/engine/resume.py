"""Resuming a run exactly: the checkpoint's config and the weights, optimizer, step and RNG streams."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from multibox.config import Config
from multibox.engine import distributed
from multibox.engine.checkpoint import checkpoint_config, checkpoint_kind, load_checkpoint
from multibox.engine.run_dir import LAST, LEGACY, NothingToResume, last_checkpoint
from multibox.errors import UserError

if TYPE_CHECKING:
    from multibox.engine.run import Run


# Settings of how (not what) to train: a resumed run takes them from the command line.
RESUME_OVERRIDES = ("steps", "epochs", "time_minutes", "device", "log_every", "checkpoint_every", "amp",
                    "channels_last", "compile", "cuda_workers")


STOP_SETTINGS = ("steps", "epochs", "time_minutes")


def keeps_budget(cfg: Config) -> bool:
    """A resume that names no stop rule keeps the run's own (its steps, epochs and the time left of its
    budget), so `train --time 3`, Ctrl-C, `train --resume` ends where the first command would have."""
    return all(getattr(cfg.train, name) is None for name in STOP_SETTINGS)


def resume_config(cfg: Config, state: dict) -> Config:
    """The checkpoint's config, with only the stop rule (when one is given), device and logging taken
    from the command line."""
    resumed = checkpoint_config(state)
    kept = STOP_SETTINGS if keeps_budget(cfg) else ()
    for name in RESUME_OVERRIDES:
        if name not in kept:
            setattr(resumed.train, name, getattr(cfg.train, name))
    return resumed


def restore(out: Path, cfg: Config, resume: bool, given: dict[str, object] | None = None,
            kinds: tuple[str, ...] | None = None) -> tuple[Config, dict | None]:
    """With ``resume``, the checkpoint in ``out`` (last.pt, or model.pt of older runs) and the config to
    continue with; ``given`` settings that differ from the run's (:func:`resume_conflicts`), or a network
    not among ``kinds`` (e.g. a classifier run resumed as a localizer), are an error."""
    if not resume:
        return cfg, None
    path = last_checkpoint(out)
    if path is None:
        raise NothingToResume(f"{out}: no checkpoint to resume ({LAST} or {LEGACY})")
    state = load_checkpoint(path, resumable=True)
    if kinds is not None and checkpoint_kind(state) not in kinds:
        raise UserError(f"{path}: holds a {checkpoint_kind(state)} run, not a {' or '.join(kinds)} run (the network "
                        "this command trains)")
    conflicts = resume_conflicts(state, given or {})
    if conflicts:
        raise UserError(f"{out}: a resumed run keeps its settings (only {', '.join(RESUME_OVERRIDES[:4])}, logging and "
                        f"checkpointing may change): {'; '.join(conflicts)}")
    state["budget_kept"] = keeps_budget(cfg)  # read by restore_state: the time already spent counts
    return resume_config(cfg, state), state


def same_value(a: object, b: object) -> bool:
    """Config values compare equal (a list from YAML equals the tuple a flag gave)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def resume_conflicts(state: dict, given: dict[str, object]) -> list[str]:
    """The settings given for a resumed run (``given``: "section.field" -> value, e.g. from flags) that
    differ from the ones it was trained with, other than :data:`RESUME_OVERRIDES`: one line each."""
    saved = checkpoint_config(state).to_dict()
    lines = []
    for key, value in given.items():
        section, name = key.split(".")
        if section == "train" and name in RESUME_OVERRIDES:
            continue
        was = saved.get(section, {}).get(name)
        if not same_value(was, value):
            lines.append(f"{key}: the run was trained with {was!r}, not {value!r}")
    return lines


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
    run.saved_step = run.step
    run.best_score, run.best_step = float(state.get("best_score", -math.inf)), state.get("best_step")
    if state.get("budget_kept"):
        run.elapsed_before, run.progress = float(state.get("elapsed_s", 0.0)), float(state.get("progress", 0.0))
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
