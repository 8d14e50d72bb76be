"""The jobs the CLI dispatches to: fit priors, train, evaluate, detect, and the demo that chains them.

Training follows §4.1: Adagrad by default, priors from k-means, prior matching, alpha = 0.3. Runs are
resumable to the exact weights of an uninterrupted run (see :mod:`multibox.data.pipeline`). Training
runs in one process or, under torchrun, as data-parallel replicas (§4.1; :mod:`multibox.distributed`,
docs/scaling.md), with mixed precision and channels-last layout on CUDA.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from multibox import distributed
from multibox.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from multibox.config import Config, TrainConfig
from multibox.data import DetectionDataset, build_dataset
from multibox.data.pipeline import CropSampler, EpochBatchSampler, MaxSquareCrop, TrainSamples, collate
from multibox.data.sampling import CoverageCropSampler
from multibox.errors import TrainingDiverged, UserError
from multibox.loss import MultiBoxLoss, weighted_total
from multibox.matcher import match_priors
from multibox.model import build_model
from multibox.priors import kmeans_priors
from multibox.evaluation.runner import (dataset_targets, drop_unreadable, predict_dataset,
                                         write_report)


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise UserError(f"--device {name!r}: expected cpu, cuda or auto")
    return torch.device(name)


def load_split(cfg: Config, split: str, data: str | None = None) -> DetectionDataset:
    """The dataset split named by the config (``data`` overrides cfg.data.data)."""
    spec = data or cfg.data.data
    options = {}
    if spec == "synthetic":
        options = {"size": cfg.data.synthetic_sizes.get(split), "image_size": cfg.data.synthetic_image_size,
                   "seed": cfg.data.synthetic_seed, "preload": cfg.data.synthetic_preload and split == cfg.data.split}
    return build_dataset(spec, split, **options)


def crop_sampler(cfg: Config) -> CropSampler:
    """The training-crop strategy of cfg.data.crop. "auto" follows §4.1 (coverage buckets) on real
    data and takes the whole (square) scene on the synthetic data, whose evaluation sees whole scenes."""
    crop = cfg.data.crop
    if crop == "auto":
        crop = "max_square" if cfg.data.data == "synthetic" else "coverage"
    if crop == "max_square":
        return MaxSquareCrop()
    if crop == "coverage":
        return CoverageCropSampler()
    raise UserError(f"data.crop {crop!r}: unknown crop strategy (expected auto, coverage or max_square)")


def training_samples(cfg: Config, dataset: DetectionDataset, priors: torch.Tensor | None) -> TrainSamples:
    return TrainSamples(dataset, cfg.model.image_size, priors, crop_sampler(cfg), cfg.data.flip, cfg.train.seed)


# ----------------------------------------------------------------------------------------------- priors


def sample_boxes(samples: TrainSamples) -> list[torch.Tensor]:
    """One training sample's ground truth per image (crop frame, xyxy in [0, 1]), without decoding pixels."""
    return [samples.draw(i, 0, i)[2] for i in range(len(samples))]


def fit_priors(samples: TrainSamples, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means priors Tensor[K, 4] over the training boxes, and how often prior matching picks each
    (Tensor[K]; it ranks the priors for the priors-only baseline)."""
    per_image = sample_boxes(samples)
    boxes = torch.cat(per_image) if per_image else torch.zeros(0, 4)
    if len(boxes) == 0:
        raise UserError(f"{samples.dataset.name}: no ground-truth boxes to fit priors to")
    priors = kmeans_priors(boxes, k, seed)
    counts = torch.zeros(k, dtype=torch.int64)
    for gt in per_image:  # scipy assignment per image
        idx = match_priors(priors, gt)
        counts += torch.bincount(idx[idx >= 0], minlength=k)
    return priors, counts


def priors_job(cfg: Config, out: str | Path) -> Path:
    """`multibox priors`: fit and save {"priors": Tensor[K, 4], "match_counts": Tensor[K]} to ``out``."""
    dataset = load_split(cfg, cfg.data.split)
    priors, counts = fit_priors(training_samples(cfg, dataset, None), cfg.model.num_boxes, cfg.train.seed)
    save_checkpoint(out, {"priors": priors, "match_counts": counts, "config": cfg.to_dict()})
    return Path(out)


# --------------------------------------------------------------------------------------------- training


@dataclass
class StopRule:
    """When training ends: a step count (from --steps or --epochs), a wall-clock deadline, or both."""

    max_steps: int | None
    deadline: float | None  # time.monotonic() value

    def done(self, step: int) -> bool:
        return (self.max_steps is not None and step >= self.max_steps) or self.past_deadline()

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def stop_rule(cfg: Config, steps_per_epoch: int) -> StopRule:
    """The stop rule of cfg.train; with several limits, the first reached ends training."""
    t = cfg.train
    if t.steps is None and t.epochs is None and t.time_minutes is None:
        raise UserError("say how long to train: --steps N, --epochs N or --time MINUTES")
    limits = [v for v in (t.steps, None if t.epochs is None else math.ceil(t.epochs * steps_per_epoch)) if v is not None]
    deadline = None if t.time_minutes is None else time.monotonic() + 60 * t.time_minutes
    return StopRule(min(limits) if limits else None, deadline)


OPTIMIZERS = {
    "adagrad": lambda params, t: torch.optim.Adagrad(params, lr=t.lr, weight_decay=t.weight_decay),  # §4.1
    "sgd": lambda params, t: torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay),
    "adam": lambda params, t: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay),
}


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.train.optimizer]([p for p in model.parameters() if p.requires_grad], cfg.train)


# Settings of how (not what) to train: a resumed run takes them from the command line.
RESUME_OVERRIDES = ("steps", "epochs", "time_minutes", "device", "log_every", "checkpoint_every", "amp",
                    "channels_last", "compile", "cuda_workers")


def resume_config(cfg: Config, state: dict) -> Config:
    """The checkpoint's config, with only the stop rule, device and logging taken from the command line."""
    resumed = Config.from_dict(state["config"], "checkpoint config")
    for name in RESUME_OVERRIDES:
        setattr(resumed.train, name, getattr(cfg.train, name))
    return resumed


@dataclass
class Task:
    """What a training run optimizes: the localizer here; the classifier plugs in the same way.

    model: the network; loss: a module (outputs, targets) -> dict of unweighted terms, with
    ``weights()``; samples: a map-style dataset keyed by (index, epoch, position); collate: batches
    them into (images, targets, problems); extras: task-specific entries stored in the checkpoint.
    """

    kind: str
    model: torch.nn.Module
    loss: torch.nn.Module
    samples: torch.utils.data.Dataset
    collate: Callable
    extras: dict


def localizer_task(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
    """The DeepMultiBox localizer: priors from k-means (or the checkpoint), MultiBoxLoss, crop samples.

    Distributed, rank 0 fits the priors and sends them to the other ranks (identical priors for the
    model and for the prior matching in every rank's data workers).
    """
    if state is None:
        fit = lambda: fit_priors(training_samples(cfg, dataset, None), cfg.model.num_boxes, cfg.train.seed)  # noqa: E731
        priors, counts = distributed.from_main(fit)
    else:
        priors, counts = state["model"]["priors"], state["prior_match_counts"]
    m = cfg.model
    model = build_model(m.backbone, priors, m.weights, m.hidden_dim, m.grid)
    samples = training_samples(cfg, dataset, priors if cfg.train.prior_matching else None)
    return Task("localizer", model, MultiBoxLoss(cfg.train.alpha, cfg.train.prior_matching), samples, collate,
                {"prior_match_counts": counts, "class_names": list(dataset.class_names)})


@dataclass
class Precision:
    """How the forward pass computes on the device: autocast dtype (None: fp32), loss scaling, layout."""

    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler  # enabled for fp16 only; a disabled scaler passes calls straight through
    channels_last: bool

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None)


AMP_MODES = ("auto", "bf16", "fp16", "off")


def resolve_precision(t: TrainConfig, device: torch.device) -> Precision:
    """cfg.train.amp / channels_last for ``device``. "auto": bf16 on CUDA GPUs that have it (no loss
    scaling needed: fp32's exponent range), fp16 + GradScaler on older GPUs, fp32 on the CPU (whose
    bf16 matmuls are only fast with AMX)."""
    if t.amp not in AMP_MODES:
        raise UserError(f"train.amp {t.amp!r}: expected one of {', '.join(AMP_MODES)}")
    mode = t.amp
    if mode == "auto":
        mode = "off" if device.type != "cuda" else "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--amp bf16: this GPU has no bfloat16 support; use --amp fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]
    channels_last = device.type == "cuda" if t.channels_last is None else bool(t.channels_last)
    return Precision(dtype, torch.amp.GradScaler(device.type, enabled=mode == "fp16"), channels_last)


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
    from multibox.backbones import BACKBONES

    if cfg.model.backbone not in BACKBONES:
        raise UserError(f"--backbone {cfg.model.backbone!r}: unknown backbone (choose from {', '.join(BACKBONES)})")
    if cfg.train.optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer {cfg.train.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    resolve_precision(cfg.train, resolve_device(cfg.train.device))
    crop_sampler(cfg)


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


def training_net(run: Run) -> torch.nn.Module:
    """run.model as the step calls it: in DDP when distributed, then compiled when asked."""
    net = distributed.wrap(run.model, run.device, synced_buffers=run.cfg.train.sync_bn)
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
    workers = run.cfg.data.num_workers
    if run.device.type != "cuda":
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = max(1, cores // run.world.local_world_size - 1)  # one core stays with the training loop
    return max(workers, min(run.cfg.train.cuda_workers, per_process))


def make_loader(run: Run, dataset: DetectionDataset) -> DataLoader:
    """This rank's batches (every world_size-th sample of the epoch), resuming at run.step."""
    cfg, world = run.cfg, run.world
    sampler = EpochBatchSampler(len(dataset), cfg.train.batch_size, cfg.train.seed, world.rank, world.world_size,
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


class StepLog:
    """Per-step log lines in RUN_DIR/log.jsonl and the progress bar, on rank 0.

    The loss terms of the steps since the last flush stay on the device; :meth:`flush` (every log_every
    steps, before checkpoints and at the end) brings them to the host in one copy, averaged over ranks,
    and raises TrainingDiverged naming the first step with a non-finite term.
    """

    def __init__(self, run: Run, total: int | None) -> None:
        self.run, self.every = run, max(1, run.cfg.train.log_every)
        self.file = open(run.out / "log.jsonl", "a") if run.world.is_main else None
        self.bar = tqdm(total=total, initial=run.step, unit="step", dynamic_ncols=True, mininterval=1.0,
                        disable=not run.world.is_main)
        self.window_start, self.window_images = time.perf_counter(), 0
        self.names: list[str] = []
        self.pending: list[torch.Tensor] = []  # Tensor[T] per step, on the device

    def __call__(self, terms: dict[str, torch.Tensor], batch: int) -> None:
        self.names = list(terms)
        self.pending.append(torch.stack(list(terms.values())))
        self.window_images += batch * self.run.world.world_size
        self.bar.update(1)
        if self.run.step % self.every == 0:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rows = distributed.mean_over_ranks(torch.stack(self.pending)).cpu()  # [n, T]: the one host sync
        first_step = self.run.step - len(self.pending) + 1
        self.pending = []
        check_finite(rows, self.names, first_step, self.run.out)
        self.write({name: float(v) for name, v in zip(self.names, rows[-1])})

    def write(self, values: dict[str, float]) -> None:
        now = time.perf_counter()
        rate = self.window_images / max(now - self.window_start, 1e-9)
        self.window_start, self.window_images = now, 0
        if self.file is None:
            return
        record = {"step": self.run.step, **{k: round(v, 6) for k, v in values.items()},
                  "lr": self.run.optimizer.param_groups[0]["lr"], "images_per_s": round(rate, 2)}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        terms = {k: f"{v:.3f}" for k, v in values.items() if k != "loss"}  # the task's own terms
        self.bar.set_postfix(loss=f"{values['loss']:.3f}", **terms, img_s=f"{rate:.0f}")

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()


def check_finite(rows: torch.Tensor, names: list[str], first_step: int, out: Path) -> None:
    """Raise TrainingDiverged for the first non-finite entry of rows Tensor[n, T] (step first_step + i)."""
    bad = (~torch.isfinite(rows)).nonzero()
    if len(bad):
        i, t = bad[0].tolist()
        raise TrainingDiverged(f"step {first_step + i}: loss term {names[t]!r} is {float(rows[i, t])}; stopping "
                               f"(last checkpoint kept in {out}; try a lower --lr)")


def report_problems(dataset: DetectionDataset, problems: list) -> None:
    """Images the workers skipped: into the dataset's problem log (one line each, once per file)."""
    for problem in problems:
        if dataset.problems is not None:
            dataset.problems.report(problem)
        else:
            print(problem, file=sys.stderr)


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


def train(cfg: Config, out_dir: str | Path, resume: bool = False,
          make_task: Callable[[Config, DetectionDataset, dict | None], Task] = localizer_task) -> Path:
    """Train a localizer (or another task); the checkpoint is OUT_DIR/model.pt, also written every
    checkpoint_every steps. Ctrl-C saves a checkpoint before leaving, so no work is lost;
    ``resume=True`` continues from it. Under torchrun, every process calls this (docs/scaling.md).
    """
    world = distributed.from_env()
    with distributed.process_group(world, resolve_device(cfg.train.device)):
        run, dataset = setup_run(cfg, out_dir, resume, make_task, world)
        return fit(run, dataset)


def fit(run: Run, dataset: DetectionDataset) -> Path:
    """The training loop of a set-up run; returns the final checkpoint's path."""
    loader = make_loader(run, dataset)
    stop = stop_rule(run.cfg, loader.batch_sampler.steps_per_epoch)
    log = StepLog(run, stop.max_steps)
    run.net.train()
    try:
        for images, targets, problems in loader:
            if should_stop(stop, run):
                break
            report_problems(dataset, problems)
            terms = train_step(run, images, targets)
            run.step += 1
            log(terms, len(images))
            if run.step % run.cfg.train.checkpoint_every == 0:
                log.flush()  # no checkpoint of diverged weights
                run.save()
        log.flush()
    except KeyboardInterrupt:
        run.save(gather=False)
        raise
    finally:
        log.close()
        if dataset.problems:
            print(f"{dataset.name}: {dataset.problems.summary()}", file=sys.stderr)
    return run.save()


# ------------------------------------------------------------------------------------ evaluate / detect


def evaluate(model_path: str | Path, out_dir: str | Path, data: str | None = None, split: str = "test",
             device: str = "auto", batch_size: int = 32, *, baselines: str = "priors", num_boxes: int | None = None,
             seed: int = 0, multiscale: bool = False, classes: list[str] | None = None) -> dict:
    """`multibox evaluate --model`: the localizer on a split against proposal baselines.

    ``baselines``: "all", "none" or a comma list of :data:`multibox.evaluation.baselines.BASELINES`,
    given ``num_boxes`` boxes per image (default: the model's K) and ``seed`` (random baseline).
    multiscale: the §4.3 two-scale localizer. classes: only objects of these classes count, the others
    are marked ignore (§4.4.2, :mod:`multibox.unseen`), and their class-agnostic PR is added.
    Writes OUT_DIR/metrics.json, report.md, detection_rate.png, pr_curve.{json,png} and the model's
    detections.json; returns the metrics dict.
    """
    from multibox.evaluation.baselines import BaselineInputs, resolve_baselines

    state = load_checkpoint(model_path)
    model, cfg = model_from_checkpoint(state)
    dataset = load_split(cfg, split, data)
    detections = predict_dataset(model, dataset, cfg.model.image_size, resolve_device(device), batch_size,
                                 cfg.data.num_workers, multiscale=multiscale)
    counts = state.get("prior_match_counts", torch.zeros(model.num_boxes, dtype=torch.int64))
    inputs = BaselineInputs(num_boxes or model.num_boxes, seed, model.priors.cpu(), counts)
    source = {"method": "DeepMultiBox", "model": str(model_path)}
    targets = restrict_targets(dataset_targets(dataset), dataset, classes)
    return report_run(dataset, detections, model.num_boxes, source, out_dir, resolve_baselines(baselines, True), inputs,
                      targets=targets, extra=lambda dets, tgts: subset_metrics(dets, tgts, classes, multiscale))


def report_run(dataset: DetectionDataset, detections: list, max_k: int, source: dict, out_dir: str | Path,
               baseline_names: list[str], inputs, write_boxes: bool = True, targets: list[dict] | None = None,
               extra: Callable[[list, list], dict] | None = None) -> dict:
    """Score one method's per-image detections (None: unreadable image) and the named baselines on the
    same images; write the report files (and with ``write_boxes`` detections.json) to ``out_dir``.
    targets: the ground truth to score against (default: the dataset's); extra: more metrics entries
    from the readable images' (detections, targets)."""
    from multibox.evaluation.baselines import baseline_detections
    from multibox.evaluation.detection_files import write_detections
    from multibox.evaluation.runner import method_summary, score

    if write_boxes:
        write_detections(Path(out_dir) / "detections.json", dataset, detections)
    others = {name: baseline_detections(name, dataset, inputs) for name in baseline_names}
    targets = dataset_targets(dataset) if targets is None else targets
    skipped, detections, targets, *rest = drop_unreadable(dataset, detections, targets, *others.values())
    main = score(detections, targets, max_k, dataset.class_names)
    metrics = {"dataset": dataset.name, **source, "skipped_images": skipped, "max_boxes": max_k} | main.metrics
    scored = {name: score(dets, targets, inputs.num_boxes) for name, dets in zip(others, rest)}
    metrics["baselines"] = {name: method_summary(s) for name, s in scored.items()}
    metrics |= extra(detections, targets) if extra else {}
    curves = {metrics["method"]: main.pr_curve} | {f"{name} baseline": s.pr_curve for name, s in scored.items()}
    write_report(metrics, out_dir, curves)
    return metrics


def evaluate_detections(detections_path: str | Path, out_dir: str | Path, data: str | None = None,
                        split: str = "test", *, cfg: Config | None = None, baselines: str = "none",
                        num_boxes: int | None = None, seed: int = 0) -> dict:
    """`multibox evaluate --detections`: boxes from any source (COCO results JSON or our
    detections.json) scored like a model's; no model, so no priors baseline.

    ``num_boxes``: the most boxes per image counted (default: the most any image has in the file);
    ``cfg``: the data options (synthetic sizes) when not the defaults.
    """
    from multibox.evaluation.baselines import BaselineInputs, resolve_baselines
    from multibox.evaluation.detection_files import read_detections

    dataset = load_split(cfg or Config(), split, data)
    loaded = read_detections(detections_path, dataset)
    say_unmatched(detections_path, loaded, dataset)
    max_k = num_boxes or max(len(d["scores"]) for d in loaded.detections) or 1
    source = {"method": Path(detections_path).name, "detections": str(detections_path),
              "unmatched_detections": loaded.unmatched,
              "images_without_detections": loaded.images_without_detections}
    names = resolve_baselines(baselines, have_model=False)
    # The boxes are the input file's: not written again (OUT_DIR may be where that file lives).
    return report_run(dataset, loaded.detections, max_k, source, out_dir, names, BaselineInputs(num_boxes or 100, seed),
                      write_boxes=False)


def say_unmatched(detections_path: str | Path, loaded, dataset: DetectionDataset) -> None:
    """On stderr: the file's entries that named no image, and the images the file has no entry for."""
    if loaded.unmatched:
        print(f"--detections {detections_path}: {loaded.unmatched} entries name no image of {dataset.name} "
              f"(e.g. {', '.join(map(repr, loaded.unmatched_examples))}); left out of the evaluation", file=sys.stderr)
    if loaded.images_without_detections:
        print(f"--detections {detections_path}: {loaded.images_without_detections} of {len(dataset)} images have "
              "no detections in the file (their objects count as missed)", file=sys.stderr)


def run_baseline(name: str, out_dir: str | Path, data: str | None = None, split: str = "test", *,
                 num_boxes: int = 100, model_path: str | Path | None = None, seed: int = 0,
                 cfg: Config | None = None) -> dict:
    """`multibox baseline NAME`: one proposal baseline's detections.json and report on a split.

    With ``model_path`` the data options come from the checkpoint (and ``priors`` uses its priors).
    """
    from multibox.evaluation.baselines import BaselineInputs, baseline_detections

    inputs = BaselineInputs(num_boxes, seed)
    if model_path is not None:
        state = load_checkpoint(model_path)
        model, cfg = model_from_checkpoint(state)
        inputs.priors = model.priors.cpu()
        inputs.match_counts = state.get("prior_match_counts")
    elif name == "priors":
        raise UserError("the priors baseline needs a model: give --model CHECKPOINT")
    dataset = load_split(cfg or Config(), split, data)
    detections = baseline_detections(name, dataset, inputs)
    max_k = min(num_boxes, len(inputs.priors)) if name == "priors" else num_boxes
    source = {"method": f"{name} baseline", "baseline": name, "seed": seed}
    return report_run(dataset, detections, max_k, source, out_dir, [], inputs)


def compare(metrics_paths: list[str], out_dir: str | Path, names: list[str] | None = None) -> dict[str, dict]:
    """`multibox compare`: several runs' detection-rate curves on one plot and one table.

    Writes OUT_DIR/detection_rate.png and OUT_DIR/compare.md; returns {run name: metrics}.
    """
    from multibox.evaluation.plots import plot_detection_rate
    from multibox.evaluation.report_md import compare_markdown

    runs = load_runs(metrics_paths, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_detection_rate({name: m["curve"] for name, m in runs.items()}, out / "detection_rate.png")
    (out / "compare.md").write_text(compare_markdown(runs))
    return runs


def load_metrics(path: str | Path) -> dict:
    """A metrics.json (or a run directory holding one) with at least a detection-rate curve."""
    path = Path(path)
    path = path / "metrics.json" if path.is_dir() else path
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such metrics file") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a metrics.json ({exc})") from None
    if not isinstance(metrics, dict) or not {"curve", "detection_rate"} <= set(metrics):
        raise UserError(f"{path}: not a metrics.json of multibox evaluate/baseline (no curve, detection_rate)")
    return metrics


def load_runs(paths: list[str], names: list[str] | None) -> dict[str, dict]:
    """{name: metrics}; names from ``names``, else each run's method (with its folder when two share one)."""
    metrics = [load_metrics(p) for p in paths]
    if names is not None and len(names) != len(paths):
        raise UserError(f"--names has {len(names)} name(s) for {len(paths)} metrics file(s)")
    if names is None:
        methods = [m.get("method", "DeepMultiBox") for m in metrics]
        names = [f"{m} ({Path(p).resolve().parent.name if Path(p).is_file() else Path(p).name})"
                 if methods.count(m) > 1 else m for m, p in zip(methods, paths)]
    if len(set(names)) != len(names):
        raise UserError(f"two runs share a name ({', '.join(names)}); give --names A,B,...")
    return dict(zip(names, metrics))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (sorted) in named directories; a missing path is an error."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{item}: no such image file or directory")
    if not files:
        raise UserError(f"no images found in {' '.join(inputs)}")
    return files


def detect(model_path: str | Path, inputs: list[str], out_dir: str | Path, top_k: int = 10,
           device: str = "auto", batch_size: int = 16, draw: bool = True) -> Path:
    """`multibox detect`: OUT_DIR/detections.json (pixel xyxy boxes and scores per image) and drawn images."""
    from multibox.evaluation.plots import draw_boxes
    from multibox.postprocess import Localizer
    from multibox.preprocess import to_pil

    files = expand_inputs(inputs)
    localizer = Localizer.from_checkpoint(model_path, resolve_device(device))
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for start in range(0, len(files), batch_size):
        chunk = [to_pil(p) for p in files[start : start + batch_size]]
        for path, image, (boxes, scores) in zip(files[start:], chunk, localizer.predict_batch(chunk, top_k)):
            entries.append({"path": str(path), "width": image.width, "height": image.height,
                            "boxes": [[round(float(v), 2) for v in b] for b in boxes],
                            "scores": [round(float(s), 5) for s in scores]})
            if draw:
                draw_boxes(image, boxes, scores).save(out / "images" / f"{path.stem}.png")
    (out / "detections.json").write_text(json.dumps(entries, indent=1))
    return out / "detections.json"


# ------------------------------------------------------------------------------------------------- demo


DEMO_STEPS = 1200  # ~38k samples: about 7 minutes on two CPU cores


def demo_config(steps: int | None = DEMO_STEPS, minutes: float | None = None) -> Config:
    """The CPU demo: a small CNN at 128 x 128 on the embedded data, for a fixed number of steps (so its
    numbers do not depend on the machine) or a wall-clock budget.

    The paper's setting (AlexNet, 220 x 220, batch 128) needs a GPU; this keeps its K = 100, alpha,
    Adagrad and prior matching and shrinks the network. The learning rate and the 8 x 8 feature grid
    come from `bench/sweep_demo.py` (test-split detection rate at 10 boxes after 1,200 steps).
    """
    cfg = Config()
    cfg.model.backbone, cfg.model.image_size, cfg.model.hidden_dim, cfg.model.grid = "tiny", 128, 512, 8
    cfg.train.steps, cfg.train.time_minutes = steps, minutes
    cfg.train.batch_size, cfg.train.lr, cfg.train.checkpoint_every = 32, 0.003, 400
    cfg.data.synthetic_preload = True
    return cfg


def demo(out_dir: str | Path = "runs/demo", steps: int | None = DEMO_STEPS, minutes: float | None = None,
         device: str = "auto", multiscale: bool = False) -> dict:
    """`multibox demo`: train on the embedded data, evaluate on its test split, draw a few detections
    (``multiscale``: with the §4.3 two-scale localizer)."""
    cfg = demo_config(steps, minutes)
    cfg.train.device = device
    out = Path(out_dir)
    model_path = train(cfg, out)
    metrics = evaluate(model_path, out, split="test", device=device, multiscale=multiscale)
    draw_examples(model_path, cfg, out / "examples", device, multiscale=multiscale)
    return metrics


def draw_examples(model_path: Path, cfg: Config, out: Path, device: str, n: int = 8, top_k: int = 10,
                  multiscale: bool = False) -> None:
    """Test images with the top-k boxes (red) and the ground truth (green)."""
    from multibox.evaluation.plots import draw_boxes
    from multibox.multiscale import MultiScaleLocalizer
    from multibox.postprocess import Localizer

    dataset = load_split(cfg, "test")
    localizer = (MultiScaleLocalizer if multiscale else Localizer).from_checkpoint(model_path, resolve_device(device))
    out.mkdir(parents=True, exist_ok=True)
    images = [dataset.load_image(i) for i in range(min(n, len(dataset)))]
    for i, (image, (boxes, scores)) in enumerate(zip(images, localizer.predict_batch(images, top_k))):
        draw_boxes(image, boxes, scores, gt_boxes=dataset.records[i].boxes).save(out / f"test_{i:02d}.png")


# ------------------------------------------------------------------------- full detection (§4.2-4.4)


def training_split(cfg: Config) -> DetectionDataset:
    """The training split without the images of cfg.data.exclude_classes (§4.4.2, :mod:`multibox.unseen`)."""
    from multibox.unseen import without_classes

    return without_classes(load_split(cfg, cfg.data.split), list(cfg.data.exclude_classes))


def check_classifier_config(cfg: Config) -> None:
    """Fail fast on classifier settings the run would only trip over later."""
    from multibox.regions import REGIONS

    if cfg.model.classifier_region not in REGIONS:
        raise UserError(f"--region {cfg.model.classifier_region!r}: expected one of {', '.join(REGIONS)}")
    ratio = cfg.data.negatives_per_positive
    if not (0 <= ratio < math.inf):
        raise UserError(f"--negatives-per-positive {ratio}: expected a finite number >= 0")


def classifier_task(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
    """The C+1-way classifier of §4.2.1: object / background crops (1 : negatives_per_positive) of the
    classifier's square regions, cross-entropy; the checkpoint stores the class names."""
    from multibox.checkpoint import checkpoint_kind
    from multibox.classifier import ClassifierLoss, build_classifier
    from multibox.data.classifier_samples import ClassifierSamples, collate_crops

    names = list(dataset.class_names)
    if state is not None and checkpoint_kind(state) != "classifier":
        raise UserError(f"--resume: the checkpoint holds a {checkpoint_kind(state)}, not a classifier")
    if state is not None and list(state["class_names"]) != names:
        raise UserError(f"--resume: the checkpoint's classes {state['class_names']} differ from the data's {names}")
    m, d = cfg.model, cfg.data
    model = build_classifier(m.backbone, len(names), m.weights, m.hidden_dim, m.grid)
    samples = ClassifierSamples(dataset, m.image_size, m.classifier_region, d.negatives_per_positive, d.flip,
                                cfg.train.seed)
    return Task("classifier", model, ClassifierLoss(), samples, collate_crops, {"class_names": names})


def train_classifier(cfg: Config, out_dir: str | Path, resume: bool = False) -> Path:
    """`multibox train-classifier`: :func:`train` with :func:`classifier_task` (same logging, checkpoints,
    resume); the checkpoint is OUT_DIR/model.pt with "task": "classifier"."""
    check_classifier_config(cfg)
    return train(cfg, out_dir, resume, classifier_task)


def detection_entry(path: Path, image, det: dict, class_names: list[str] | None) -> dict:
    """One image's detections.json entry: boxes, scores, and with a classifier labels (names) and label_ids."""
    entry = {"path": str(path), "width": image.width, "height": image.height,
             "boxes": [[round(float(v), 2) for v in b] for b in det["boxes"]],
             "scores": [round(float(s), 5) for s in det["scores"]]}
    if class_names is not None:
        entry |= {"labels": [class_names[i] for i in det["labels"].tolist()], "label_ids": det["labels"].tolist()}
    return entry


def draw_detections(image, det: dict, class_names: list[str] | None):
    """``image`` with its detections drawn; with labels, each box once, with its best class."""
    import numpy as np

    from multibox.evaluation.plots import draw_boxes

    if class_names is None:
        return draw_boxes(image, det["boxes"], det["scores"])
    _, first = np.unique(det["box_index"].numpy(), return_index=True)  # sorted by score: first = best class
    first = np.sort(first)
    return draw_boxes(image, det["boxes"][first], det["scores"][first],
                      labels=[class_names[i] for i in det["labels"][first].tolist()])


def detection_predictor(model_path: str | Path, classifier: str | Path | None, device: str, top_k: int,
                        multiscale: bool, mode: str, region: str | None):
    """(images -> per-image detection dicts, class names or None) for `detect`."""
    from multibox.detector import Detector
    from multibox.multiscale import MultiScaleLocalizer
    from multibox.postprocess import Localizer

    dev = resolve_device(device)
    if classifier is not None:
        detector = Detector.from_checkpoints(model_path, classifier, dev, top_k, mode, region, multiscale)
        return detector.detect_batch, detector.class_names
    localizer = (MultiScaleLocalizer if multiscale else Localizer).from_checkpoint(model_path, dev)
    return lambda images: [{"boxes": b, "scores": s} for b, s in localizer.predict_batch(images, top_k)], None


def detect_full(model_path: str | Path, inputs: list[str], out_dir: str | Path, classifier: str | Path | None = None,
                top_k: int = 10, device: str = "auto", batch_size: int = 16, draw: bool = True,
                multiscale: bool = False, mode: str = "voc", region: str | None = None) -> Path:
    """`multibox detect --classifier CLS` / `--multiscale`: OUT_DIR/detections.json (pixel xyxy boxes,
    scores, and with a classifier class names ``labels`` and indices ``label_ids``) and drawn images."""
    from multibox.preprocess import to_pil

    files = expand_inputs(inputs)
    predict, names = detection_predictor(model_path, classifier, device, top_k, multiscale, mode, region)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for start in range(0, len(files), batch_size):
        chunk = [to_pil(p) for p in files[start : start + batch_size]]
        for path, image, det in zip(files[start:], chunk, predict(chunk)):
            entries.append(detection_entry(path, image, det, names))
            if draw:
                draw_detections(image, det, names).save(out / "images" / f"{path.stem}.png")
    (out / "detections.json").write_text(json.dumps(entries, indent=1))
    return out / "detections.json"


def restrict_targets(targets: list[dict], dataset: DetectionDataset, classes: list[str] | None) -> list[dict]:
    """With ``classes`` (`evaluate --classes`), every object of another class is marked ignore (§4.4.2)."""
    if not classes:
        return targets
    from multibox.unseen import class_ids, only_classes

    return only_classes(targets, class_ids(list(dataset.class_names), classes, "--classes"))


def subset_metrics(detections: list[dict], targets: list[dict], classes: list[str] | None, multiscale: bool) -> dict:
    """The extra `evaluate` entries: "multiscale" when used; with ``classes``, the class-agnostic
    precision-recall on those classes' objects (Fig. 5)."""
    from multibox.evaluation.voc import ClassAgnosticPR

    out: dict = {"multiscale": True} if multiscale else {}
    if classes:
        pr = ClassAgnosticPR()
        pr.update(detections, targets)
        out |= {"classes": list(classes), "class_agnostic_pr": pr.compute()}
    return out
