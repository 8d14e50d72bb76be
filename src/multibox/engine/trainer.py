"""The training loop: a :class:`Run` (task, optimizer, device, precision), one optimizer step, and
:func:`fit`, which steps until the stop rule says so, logging and checkpointing on the way.

Training follows §4.1: Adagrad by default, priors from k-means, prior matching, alpha = 0.3. Runs are
resumable to the exact weights of an uninterrupted run (:mod:`multibox.engine.resume`). Training runs in
one process or, under torchrun, as data-parallel replicas (§4.1; :mod:`multibox.engine.distributed`,
docs/scaling.md), with mixed precision and channels-last layout on CUDA.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from multibox.config import Config, check_choices, check_values
from multibox.data import DetectionDataset
from multibox.data.build import training_split
from multibox.data.pipeline import EpochBatchSampler
from multibox.engine import distributed
from multibox.engine.checkpoint import save_checkpoint
from multibox.engine.optim import lr_factor, make_optimizer
from multibox.engine.precision import resolve_device, resolve_precision
from multibox.engine.resume import restore, restore_state
from multibox.engine.run import Run
from multibox.engine.run_dir import BEST, LAST, claim_run_dir, clear_run_files, last_checkpoint, next_run_dir
from multibox.engine.signals import terminate_as_interrupt
from multibox.engine.startup import data_line, model_lines, say
from multibox.engine.step_log import StepLog
from multibox.engine.stop import StopRule, budget_line, check_stop_given, should_stop, stop_rule
from multibox.engine.tasks import TASKS, Task, classifier_task, crop_sampler, localizer_task
from multibox.errors import Interrupted, UserError
from multibox.modeling.losses import weighted_total
from multibox.threads import available_cpus

# torch.compile arguments; tests swap in {"backend": "eager"} to check the wiring without a C++ build.
COMPILE_OPTIONS: dict = {}


def check_config(cfg: Config, make_task: Callable | None = None) -> None:
    """Fail fast, before any data is read, on values and names the run would only trip over later; with
    ``make_task``, also on a missing stop rule where that task does not pick its own length."""
    check_values(cfg)
    check_choices(cfg)
    resolve_precision(cfg.train, resolve_device(cfg.train.device))
    crop_sampler(cfg)
    if make_task is not None and not sets_own_length(cfg, make_task):
        check_stop_given(cfg)


def sets_own_length(cfg: Config, make_task: Callable) -> bool:
    """Whether the task picks the run's length from the data when no stop rule is given (the cached
    conv-head localizer does, engine.tasks.cached_steps)."""
    return (make_task is not classifier_task and cfg.model.kind == "localizer" and cfg.model.head == "conv"
            and cfg.train.cache_features)


def training_net(run: Run) -> torch.nn.Module:
    """run.model as the step calls it: in DDP when distributed, then compiled when asked."""
    net = distributed.wrap(run.task.net or run.model, run.device, synced_buffers=run.cfg.train.sync_bn)
    return torch.compile(net, **COMPILE_OPTIONS) if run.cfg.train.compile else net


def setup_run(cfg: Config, out_dir: str | Path, resume: bool,
              make_task: Callable[[Config, DetectionDataset, dict | None], Task] = localizer_task,
              world: distributed.World | None = None, exist_ok: bool = False,
              given: dict[str, object] | None = None) -> tuple[Run, DetectionDataset]:
    """Build (or restore) the task's model, optimizer and data for ``train``; every rank calls it.
    The run folder is claimed first (:func:`multibox.engine.run_dir.claim_run_dir`), before any data is read;
    ``given``: the settings asked for explicitly, checked against a resumed run's (engine.resume.restore)."""
    world = world or distributed.World()
    check_config(cfg)
    out = Path(out_dir)
    if world.is_main:
        claim_run_dir(out, resume, exist_ok)
    kinds = ("classifier",) if make_task is classifier_task else tuple(TASKS)  # the networks `train --kind` makes
    cfg, state = restore(out, cfg, resume, given, kinds)
    device = distributed.local_device(resolve_device(cfg.train.device), world)
    precision = resolve_precision(cfg.train, device)
    dataset = training_split(cfg)
    say([data_line(dataset)], world.is_main)
    given_geometry = (cfg.model.image_size, cfg.model.stride)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    task = make_task(cfg, dataset, state)
    if task.kind == "localizer":
        say(model_lines(cfg, task, dataset, given_geometry), world.is_main)
    if world.distributed and cfg.train.sync_bn:
        task.model = distributed.convert_batchnorm(task.model, device)
    task.model.to(device, memory_format=torch.channels_last if precision.channels_last else torch.preserve_format)
    run = Run(cfg, out, task, make_optimizer(cfg, task.model), device, precision, world)
    restore_state(run, state)
    run.net = training_net(run)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if state is None:
            clear_run_files(out)
        cfg.save_yaml(out / "config.yaml")
    return run, dataset


def loader_workers(run: Run) -> int:
    """data.num_workers on the CPU; on CUDA at least train.cuda_workers, within this process's CPU cores."""
    workers = run.cfg.data.num_workers if run.task.workers is None else run.task.workers
    if run.device.type != "cuda" or run.task.workers is not None:
        return workers
    per_process = max(1, available_cpus() // run.world.local_world_size - 1)  # one core stays with the training loop
    return max(workers, min(run.cfg.train.cuda_workers, per_process))


def make_loader(run: Run, dataset: DetectionDataset) -> DataLoader:
    """This rank's batches (every world_size-th sample of the epoch), resuming at run.step."""
    cfg, world = run.cfg, run.world
    sampler = EpochBatchSampler(len(run.task.samples), cfg.train.batch_size, cfg.train.seed, world.rank, world.world_size,
                                start_step=run.step, sharded=getattr(run.task.samples, "sharded", False))
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


# (the model, the run's config) -> metrics, "score" (higher is better) picking best.pt; None: nothing to score on
Validate = Callable[[torch.nn.Module, Config], dict[str, float] | None]
OnCheckpoint = Callable[[Path], None]  # called on rank 0 with the run folder after each checkpoint (e.g. plots)


def train(cfg: Config, out_dir: str | Path | None = None, resume: bool = False,
          make_task: Callable[[Config, DetectionDataset, dict | None], Task] = localizer_task,
          validate: Validate | None = None, exist_ok: bool = False, on_checkpoint: OnCheckpoint | None = None,
          run_name: str = "train", given: dict[str, object] | None = None) -> Path:
    """Train a localizer (or another task) in the run folder OUT_DIR (default: runs/RUN_NAME, numbered
    when taken): OUT_DIR/last.pt (everything ``resume`` needs) every checkpoint_every steps and at the
    end, OUT_DIR/best.pt (the weights to ship: the best ``validate`` score, else the last weights).
    A folder holding another run is refused unless ``resume`` (continue it) or ``exist_ok`` (start
    over in it); ``given`` settings that differ from a resumed run's are an error. Ctrl-C and SIGTERM
    save last.pt before leaving (:class:`multibox.errors.Interrupted` names it). Under torchrun every
    process calls this (docs/scaling.md). The --time budget counts from here, set-up (e.g. caching
    features) included.
    """
    started = time.monotonic()
    check_config(cfg, None if resume else make_task)  # before the run folder and data (resumed: its own stop rule)
    world = distributed.from_env()
    restart = elastic_restart(out_dir)
    with distributed.process_group(world, resolve_device(cfg.train.device)), terminate_as_interrupt():
        out = Path(out_dir) if out_dir is not None else distributed.from_main(lambda: next_run_dir(run_name))
        if restart:  # torchrun restarted the workers after one failed: continue the run from its last.pt
            resume, exist_ok = last_checkpoint(out) is not None, True
            if world.is_main:
                print(f"torchrun restart {restart}: {'resuming' if resume else 'restarting'} {out}", file=sys.stderr)
        run, dataset = setup_run(cfg, out, resume, make_task, world, exist_ok, given)
        return fit(run, dataset, validate, started, on_checkpoint)


def elastic_restart(out_dir: str | Path | None) -> int:
    """Which restart of the worker group this is under ``torchrun --max-restarts N`` (0: the first
    start, or not under torchrun). Restarts resume the run folder, so it must be named."""
    if out_dir is None and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0:
        raise UserError("restartable runs (torchrun --max-restarts) need a named run folder, so a restarted "
                        "worker finds the run")
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def say_budget(run: Run, stop: StopRule) -> None:
    """One line on rank 0 when the time budget ended the run."""
    line = budget_line(run.cfg, stop, run.step)
    if line and run.world.is_main:
        print(line, file=sys.stderr)


def set_learning_rate(run: Run, stop: StopRule) -> None:
    """train.lr x the warmup / decay factor of this step (engine.optim.lr_factor)."""
    t = run.cfg.train
    run.progress = stop.progress(run.step)
    factor = lr_factor(run.step, run.progress, t.warmup_steps, t.schedule)
    for group in run.optimizer.param_groups:
        group["lr"] = t.lr * factor * group.get("lr_scale", 1.0)


class Best:
    """Scores the model at checkpoints (``validate``) and writes OUT/best.pt when it beats run.best_score
    (kept in last.pt, so a resumed run does not replace a better best.pt); the metrics go to log.jsonl's
    "val_*" entries. With nothing to score on, best.pt is the final weights."""

    def __init__(self, run: Run, validate: Validate | None, log: StepLog) -> None:
        self.run, self.validate, self.log, self.scored_step = run, validate, log, -1

    def __call__(self) -> None:
        run = self.run
        if self.validate is None or not run.world.is_main or self.scored_step == run.step:
            return
        self.scored_step = run.step
        was_training = run.net.training
        metrics = self.validate(run.model, run.cfg)
        run.net.train(was_training)
        if metrics is None:
            self.validate = None
            return
        self.log.note({"step": run.step} | {f"val_{k}": round(float(v), 6) for k, v in metrics.items()})
        if metrics["score"] > run.best_score:
            run.best_score, run.best_step = float(metrics["score"]), run.step
            save_checkpoint(run.out / BEST, run.weights_only() | {"val_score": run.best_score})

    def interrupted(self) -> None:
        """A stopped run with no best.pt yet (no validation before Ctrl-C) leaves the weights it has as
        best.pt (val_score None), so the printed next commands work; a validated best.pt is kept."""
        if not (self.run.out / BEST).exists() and self.run.step:
            self.last_as_best()

    def finish(self) -> None:
        """At the end of a run with nothing to score on: best.pt = the last weights."""
        if self.validate is None:
            self.last_as_best()

    def last_as_best(self) -> None:
        """best.pt = the current weights, unscored (rank 0 writes)."""
        if self.run.world.is_main:
            self.run.best_step = self.run.step
            save_checkpoint(self.run.out / BEST, self.run.weights_only() | {"val_score": None})


def nothing_to_do(run: Run, stop: StopRule) -> bool:
    """A resumed run already at (or past) its step limit: say so instead of saving it again."""
    if run.step and stop.past_deadline():
        if run.world.is_main:
            print(f"{run.out}: its time budget of {run.cfg.train.time_minutes:g} min is spent ({run.elapsed_before / 60:.1f} "
                  "min trained): nothing to do (give --time, --steps or --epochs to continue)", file=sys.stderr)
        return True
    if not run.step or stop.max_steps is None or run.step < stop.max_steps:
        return False
    if run.world.is_main:
        print(f"{run.out}: already at step {run.step}, the stop rule asks for {stop.max_steps}: nothing to do "
              "(give more steps, epochs or time to continue)", file=sys.stderr)
    return True


def interrupted_checkpoint(run: Run, log: StepLog) -> tuple[Path | None, int | None]:
    """The checkpoint a stopped run leaves: one process saves where it is (never diverged weights);
    distributed ranks keep the last periodic last.pt, which holds every rank's RNG, so a restarted or
    resumed run retraces the uninterrupted one (a peer may be gone: no collectives now)."""
    if run.world.distributed:
        return (run.out / LAST, run.saved_step) if run.saved_step is not None else (None, None)
    return (run.save(gather=False), run.step) if log.flush_quietly() else (None, None)


def fit(run: Run, dataset: DetectionDataset, validate: Validate | None = None, started: float | None = None,
        on_checkpoint: OnCheckpoint | None = None) -> Path:
    """The training loop of a set-up run; returns the last checkpoint's path (RUN/last.pt)."""
    loader = make_loader(run, dataset)
    run.session_start = started or run.session_start  # the budget counts set-up (caching) too, so does the time spent
    stop = stop_rule(run.cfg, loader.batch_sampler.steps_per_epoch, started, run.task.default_steps,
                     run.elapsed_before, run.progress)
    if nothing_to_do(run, stop):
        return run.out / LAST
    if run.step and run.world.is_main:
        limit = f" to step {stop.max_steps}" if stop.max_steps else ""
        print(f"resuming {run.out} from step {run.step}{limit}", file=sys.stderr)
    log = StepLog(run, stop)
    best = Best(run, validate, log)
    checkpointed = (lambda: on_checkpoint(run.out)) if on_checkpoint and run.world.is_main else (lambda: None)
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
                checkpointed()
        log.flush()
        path = run.save()
        best()
        best.finish()
        say_budget(run, stop)
    except KeyboardInterrupt as exc:
        path, step = interrupted_checkpoint(run, log)
        best.interrupted()
        checkpointed()
        raise Interrupted(getattr(exc, "signal_name", "Ctrl-C"), path, step) from None
    finally:
        log.close()
        if dataset.problems:
            print(f"{dataset.name}: {dataset.problems.summary()}", file=sys.stderr)
    checkpointed()
    return path
