"""The training loop: a :class:`Run` (task, optimizer, device, precision), one optimizer step, and
:func:`fit`, which steps until the stop rule says so, logging and checkpointing on the way.

Training follows §4.1: Adagrad by default, priors from k-means, prior matching, alpha = 0.3. Runs are
resumable to the exact weights of an uninterrupted run (:mod:`multibox.engine.resume`). Training runs in
one process or, under torchrun, as data-parallel replicas (§4.1; :mod:`multibox.engine.distributed`,
docs/scaling.md), with mixed precision and channels-last layout on CUDA.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from multibox.config import Config, check_choices
from multibox.data import DetectionDataset
from multibox.data.build import training_split
from multibox.data.pipeline import EpochBatchSampler
from multibox.engine import distributed
from multibox.engine.checkpoint import save_checkpoint
from multibox.engine.optim import lr_factor, make_optimizer
from multibox.engine.precision import Precision, resolve_device, resolve_precision
from multibox.engine.resume import restore, restore_state
from multibox.engine.step_log import StepLog
from multibox.engine.stop import StopRule, should_stop, stop_rule
from multibox.engine.tasks import Task, crop_sampler, localizer_task
from multibox.modeling.losses import weighted_total

# torch.compile arguments; tests swap in {"backend": "eager"} to check the wiring without a C++ build.
COMPILE_OPTIONS: dict = {}


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
                "grad_scaler": self.precision.scaler.state_dict()} | self.task.extras

    def save(self, gather: bool = True) -> Path:
        """Every rank calls it; rank 0 writes, the others wait until the file is complete.

        gather=False (Ctrl-C) skips the collectives, which could hang when other ranks are gone; the
        checkpoint then holds rank 0's RNG state only.
        """
        path = self.out / "model.pt"
        rng_states = distributed.gather_objects(torch.get_rng_state()) if gather else [torch.get_rng_state()]
        if self.world.is_main:
            save_checkpoint(path, self.checkpoint(rng_states))
        if gather:
            distributed.barrier()
        return path


def check_config(cfg: Config) -> None:
    """Fail fast, before any data is read, on names the run would only trip over later."""
    check_choices(cfg)
    resolve_precision(cfg.train, resolve_device(cfg.train.device))
    crop_sampler(cfg)


def training_net(run: Run) -> torch.nn.Module:
    """run.model as the step calls it: in DDP when distributed, then compiled when asked."""
    net = distributed.wrap(run.task.net or run.model, run.device, synced_buffers=run.cfg.train.sync_bn)
    return torch.compile(net, **COMPILE_OPTIONS) if run.cfg.train.compile else net


def setup_run(cfg: Config, out_dir: str | Path, resume: bool,
              make_task: Callable[[Config, DetectionDataset, dict | None], Task] = localizer_task,
              world: distributed.World | None = None) -> tuple[Run, DetectionDataset]:
    """Build (or restore) the task's model, optimizer and data for ``train``; every rank calls it."""
    world = world or distributed.World()
    check_config(cfg)
    out = Path(out_dir)
    cfg, state = restore(out, cfg, resume)
    device = distributed.local_device(resolve_device(cfg.train.device), world)
    precision = resolve_precision(cfg.train, device)
    dataset = training_split(cfg)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    task = make_task(cfg, dataset, state)
    if world.distributed and cfg.train.sync_bn:
        task.model = distributed.convert_batchnorm(task.model, device)
    task.model.to(device, memory_format=torch.channels_last if precision.channels_last else torch.preserve_format)
    run = Run(cfg, out, task, make_optimizer(cfg, task.model), device, precision, world)
    restore_state(run, state)
    run.net = training_net(run)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save_yaml(out / "config.yaml")
    return run, dataset


def loader_workers(run: Run) -> int:
    """data.num_workers on the CPU; on CUDA at least train.cuda_workers, within this process's CPU cores."""
    workers = run.cfg.data.num_workers if run.task.workers is None else run.task.workers
    if run.device.type != "cuda" or run.task.workers is not None:
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = max(1, cores // run.world.local_world_size - 1)  # one core stays with the training loop
    return max(workers, min(run.cfg.train.cuda_workers, per_process))


def make_loader(run: Run, dataset: DetectionDataset) -> DataLoader:
    """This rank's batches (every world_size-th sample of the epoch), resuming at run.step."""
    cfg, world = run.cfg, run.world
    sampler = EpochBatchSampler(len(run.task.samples), cfg.train.batch_size, cfg.train.seed, world.rank, world.world_size,
                                start_step=run.step)
    workers = loader_workers(run)
    # Its own generator: the loader draws a base seed when iterated, which from the global RNG would shift
    # a resumed run's dropout masks (the global RNG is restored from the checkpoint).
    return DataLoader(run.task.samples, batch_sampler=sampler, collate_fn=run.task.collate, num_workers=workers,
                      pin_memory=run.device.type == "cuda", persistent_workers=workers > 0,
                      prefetch_factor=4 if workers else None, generator=torch.Generator().manual_seed(cfg.train.seed))


def to_float(outputs: Any) -> Any:
    """Floating-point tensors of a (nested) output to fp32: the loss is computed outside autocast."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: to_float(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(to_float(v) for v in outputs)
    return outputs


def train_step(run: Run, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One optimizer step; returns the loss terms and "loss" as detached 0-d tensors on the device.

    Nothing here waits for the device: the values reach the host only on log steps (StepLog.flush),
    which is also where a NaN is caught.
    """
    memory_format = torch.channels_last if run.precision.channels_last else torch.preserve_format
    images = images.to(run.device, non_blocking=True).contiguous(memory_format=memory_format)
    targets = {k: v.to(run.device, non_blocking=True) for k, v in targets.items()}
    with run.precision.autocast(run.device):
        outputs = run.net(images)
    terms = run.task.loss(to_float(outputs), targets)  # fp32: bf16 keeps 3 digits of a squared box error
    total = weighted_total(terms, run.task.loss.weights())
    scaler = run.precision.scaler
    run.optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if run.cfg.train.grad_clip:
        scaler.unscale_(run.optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.train.grad_clip)
    scaler.step(run.optimizer)  # fp16: skipped when the gradients overflowed
    scaler.update()
    return {name: v.detach() for name, v in terms.items()} | {"loss": total.detach()}


def report_problems(dataset: DetectionDataset, problems: list) -> None:
    """Images the workers skipped: into the dataset's problem log (one line each, once per file)."""
    for problem in problems:
        if dataset.problems is not None:
            dataset.problems.report(problem)
        else:
            print(problem, file=sys.stderr)


Validate = Callable[[torch.nn.Module], float]  # the model -> a score (higher is better), for best.pt


def train(cfg: Config, out_dir: str | Path, resume: bool = False,
          make_task: Callable[[Config, DetectionDataset, dict | None], Task] = localizer_task,
          validate: Validate | None = None) -> Path:
    """Train a localizer (or another task); the checkpoint is OUT_DIR/model.pt, also written every
    checkpoint_every steps. Ctrl-C saves a checkpoint before leaving, so no work is lost;
    ``resume=True`` continues from it. Under torchrun, every process calls this (docs/scaling.md).
    ``validate`` (rank 0) scores the model at every checkpoint; the best scoring weights are
    OUT_DIR/best.pt. The --time budget counts from here, set-up (e.g. caching features) included.
    """
    started = time.monotonic()
    world = distributed.from_env()
    with distributed.process_group(world, resolve_device(cfg.train.device)):
        run, dataset = setup_run(cfg, out_dir, resume, make_task, world)
        return fit(run, dataset, validate, started)


def set_learning_rate(run: Run, stop: StopRule) -> None:
    """train.lr x the warmup / decay factor of this step (engine.optim.lr_factor)."""
    t = run.cfg.train
    factor = lr_factor(run.step, stop.progress(run.step), t.warmup_steps, t.schedule)
    for group in run.optimizer.param_groups:
        group["lr"] = t.lr * factor


class Best:
    """Scores the model at checkpoints (``validate``) and writes OUT/best.pt when it improves; the score
    and step go to log.jsonl's "val" lines."""

    def __init__(self, run: Run, validate: Validate | None, log: StepLog) -> None:
        self.run, self.validate, self.log, self.score, self.scored_step = run, validate, log, -math.inf, -1

    def __call__(self) -> None:
        if self.validate is None or not self.run.world.is_main or self.scored_step == self.run.step:
            return
        self.scored_step = self.run.step
        was_training = self.run.net.training
        score = float(self.validate(self.run.model))
        self.run.net.train(was_training)
        self.log.note({"step": self.run.step, "val_score": round(score, 6)})
        if score > self.score:
            self.score = score
            save_checkpoint(self.run.out / "best.pt", self.run.weights_only() | {"val_score": score})


def fit(run: Run, dataset: DetectionDataset, validate: Validate | None = None, started: float | None = None) -> Path:
    """The training loop of a set-up run; returns the final checkpoint's path."""
    loader = make_loader(run, dataset)
    stop = stop_rule(run.cfg, loader.batch_sampler.steps_per_epoch, started, run.task.default_steps)
    log = StepLog(run, stop.max_steps)
    best = Best(run, validate, log)
    run.net.train()
    try:
        for images, targets, problems in loader:
            if should_stop(stop, run):
                break
            report_problems(dataset, problems)
            set_learning_rate(run, stop)
            terms = train_step(run, images, targets)
            run.step += 1
            log(terms, len(images))
            if run.step % run.cfg.train.checkpoint_every == 0:
                log.flush()  # no checkpoint of diverged weights
                run.save()
                best()
        log.flush()
        path = run.save()
        best()
    except KeyboardInterrupt:
        run.save(gather=False)
        raise
    finally:
        log.close()
        if dataset.problems:
            print(f"{dataset.name}: {dataset.problems.summary()}", file=sys.stderr)
    return path
