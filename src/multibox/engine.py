"""The jobs the CLI dispatches to: fit priors, train, evaluate, detect, and the demo that chains them.

Training follows §4.1: Adagrad by default, priors from k-means, prior matching, alpha = 0.3. Runs are
resumable to the exact weights of an uninterrupted run (see :mod:`multibox.data.pipeline`).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from multibox.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from multibox.config import Config
from multibox.data import DetectionDataset, build_dataset
from multibox.data.pipeline import CropSampler, EpochBatchSampler, MaxSquareCrop, TrainSamples, collate
from multibox.data.sampling import CoverageCropSampler
from multibox.errors import TrainingDiverged, UserError
from multibox.loss import MultiBoxLoss, weighted_total
from multibox.matcher import match_priors
from multibox.model import build_model
from multibox.priors import kmeans_priors
from multibox.evaluation.runner import (dataset_targets, detection_rate, drop_unreadable, predict_dataset,
                                         prior_detections, write_report)


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
        return (self.max_steps is not None and step >= self.max_steps) or (
            self.deadline is not None and time.monotonic() >= self.deadline)


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


RESUME_OVERRIDES = ("steps", "epochs", "time_minutes", "device", "log_every", "checkpoint_every")


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
    """The DeepMultiBox localizer: priors from k-means (or the checkpoint), MultiBoxLoss, crop samples."""
    if state is None:
        priors, counts = fit_priors(training_samples(cfg, dataset, None), cfg.model.num_boxes, cfg.train.seed)
    else:
        priors, counts = state["model"]["priors"], state["prior_match_counts"]
    m = cfg.model
    model = build_model(m.backbone, priors, m.weights, m.hidden_dim, m.grid)
    samples = training_samples(cfg, dataset, priors if cfg.train.prior_matching else None)
    return Task("localizer", model, MultiBoxLoss(cfg.train.alpha, cfg.train.prior_matching), samples, collate,
                {"prior_match_counts": counts, "class_names": list(dataset.class_names)})


@dataclass
class Run:
    """Everything a training run holds."""

    cfg: Config
    out: Path
    task: Task
    optimizer: torch.optim.Optimizer
    device: torch.device
    step: int = 0

    @property
    def model(self) -> torch.nn.Module:
        return self.task.model

    def checkpoint(self) -> dict:
        return {"task": self.task.kind, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "config": self.cfg.to_dict(), "step": self.step, "torch_rng": torch.get_rng_state()} | self.task.extras

    def save(self) -> Path:
        path = self.out / "model.pt"
        save_checkpoint(path, self.checkpoint())
        return path


def check_config(cfg: Config) -> None:
    """Fail fast, before any data is read, on names the run would only trip over later."""
    from multibox.backbones import BACKBONES

    if cfg.model.backbone not in BACKBONES:
        raise UserError(f"--backbone {cfg.model.backbone!r}: unknown backbone (choose from {', '.join(BACKBONES)})")
    if cfg.train.optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer {cfg.train.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    resolve_device(cfg.train.device)
    crop_sampler(cfg)


def restore(out: Path, cfg: Config, resume: bool) -> tuple[Config, dict | None]:
    """With ``resume``, the checkpoint in ``out`` and the config to continue with."""
    if not resume:
        return cfg, None
    if not (out / "model.pt").is_file():
        raise UserError(f"--resume: no checkpoint at {out / 'model.pt'}")
    state = load_checkpoint(out / "model.pt")
    return resume_config(cfg, state), state


def setup_run(cfg: Config, out_dir: str | Path, resume: bool,
              make_task: Callable[[Config, DetectionDataset, dict | None], Task] = localizer_task) -> tuple[Run, DetectionDataset]:
    """Build (or restore) the task's model, optimizer and data for ``train``."""
    check_config(cfg)
    out = Path(out_dir)
    cfg, state = restore(out, cfg, resume)
    device = resolve_device(cfg.train.device)
    dataset = training_split(cfg)
    torch.manual_seed(cfg.train.seed)
    task = make_task(cfg, dataset, state)
    task.model.to(device)
    run = Run(cfg, out, task, make_optimizer(cfg, task.model), device)
    if state is not None:
        task.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_yaml(out / "config.yaml")
    return run, dataset


def make_loader(run: Run, dataset: DetectionDataset) -> DataLoader:
    cfg = run.cfg
    sampler = EpochBatchSampler(len(dataset), cfg.train.batch_size, cfg.train.seed, start_step=run.step)
    workers = cfg.data.num_workers
    # Its own generator: the loader draws a base seed when iterated, which from the global RNG would shift
    # a resumed run's dropout masks (the global RNG is restored from the checkpoint).
    return DataLoader(run.task.samples, batch_sampler=sampler, collate_fn=run.task.collate, num_workers=workers,
                      pin_memory=run.device.type == "cuda", persistent_workers=workers > 0,
                      prefetch_factor=4 if workers else None, generator=torch.Generator().manual_seed(cfg.train.seed))


def train_step(run: Run, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, float]:
    """One optimizer step; returns the loss terms as floats. Raises TrainingDiverged on NaN/inf."""
    images = images.to(run.device, non_blocking=True)
    targets = {k: v.to(run.device, non_blocking=True) for k, v in targets.items()}
    terms = run.task.loss(run.model(images), targets)
    total = weighted_total(terms, run.task.loss.weights())
    values = {name: float(v.detach()) for name, v in terms.items()} | {"loss": float(total.detach())}
    for name, value in values.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"step {run.step + 1}: loss term {name!r} is {value}; stopping "
                                   f"(last checkpoint kept in {run.out}; try a lower --lr)")
    run.optimizer.zero_grad(set_to_none=True)
    total.backward()
    if run.cfg.train.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.train.grad_clip)
    run.optimizer.step()
    return values


class StepLog:
    """Per-step log lines in RUN_DIR/log.jsonl and the progress bar's figures."""

    def __init__(self, run: Run, total: int | None) -> None:
        self.run, self.every = run, max(1, run.cfg.train.log_every)
        self.file = open(run.out / "log.jsonl", "a")
        self.bar = tqdm(total=total, initial=run.step, unit="step", dynamic_ncols=True, mininterval=1.0)
        self.window_start, self.window_images = time.perf_counter(), 0

    def __call__(self, values: dict[str, float], batch: int) -> None:
        self.window_images += batch
        self.bar.update(1)
        if self.run.step % self.every:
            return
        now = time.perf_counter()
        rate = self.window_images / max(now - self.window_start, 1e-9)
        self.window_start, self.window_images = now, 0
        record = {"step": self.run.step, **{k: round(v, 6) for k, v in values.items()},
                  "lr": self.run.optimizer.param_groups[0]["lr"], "images_per_s": round(rate, 2)}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        terms = {k: f"{v:.3f}" for k, v in values.items() if k != "loss"}  # the task's own terms
        self.bar.set_postfix(loss=f"{values['loss']:.3f}", **terms, img_s=f"{rate:.0f}")

    def close(self) -> None:
        self.bar.close()
        self.file.close()


def report_problems(dataset: DetectionDataset, problems: list) -> None:
    """Images the workers skipped: into the dataset's problem log (one line each, once per file)."""
    for problem in problems:
        if dataset.problems is not None:
            dataset.problems.report(problem)
        else:
            print(problem, file=sys.stderr)


def train(cfg: Config, out_dir: str | Path, resume: bool = False,
          make_task: Callable[[Config, DetectionDataset, dict | None], Task] = localizer_task) -> Path:
    """Train a localizer (or another task); the checkpoint is OUT_DIR/model.pt, also written every
    checkpoint_every steps. Ctrl-C saves a checkpoint before leaving, so no work is lost;
    ``resume=True`` continues from it.
    """
    run, dataset = setup_run(cfg, out_dir, resume, make_task)
    loader = make_loader(run, dataset)
    stop = stop_rule(run.cfg, loader.batch_sampler.steps_per_epoch)
    log = StepLog(run, stop.max_steps)
    run.model.train()
    try:
        for images, targets, problems in loader:
            if stop.done(run.step):
                break
            report_problems(dataset, problems)
            values = train_step(run, images, targets)
            run.step += 1
            log(values, len(images))
            if run.step % run.cfg.train.checkpoint_every == 0:
                run.save()
    except KeyboardInterrupt:
        run.save()
        raise
    finally:
        log.close()
        if dataset.problems:
            print(f"{dataset.name}: {dataset.problems.summary()}", file=sys.stderr)
    return run.save()


# ------------------------------------------------------------------------------------ evaluate / detect


def evaluate(model_path: str | Path, out_dir: str | Path, data: str | None = None, split: str = "test",
             device: str = "auto", batch_size: int = 32, multiscale: bool = False,
             classes: list[str] | None = None) -> dict:
    """`multibox evaluate`: detection rate vs number of boxes on a split, with the priors-only baseline.

    multiscale: the §4.3 two-scale localizer. classes: only objects of these classes count, the others
    are marked ignore (§4.4.2, :mod:`multibox.unseen`), and class-agnostic PR is added.
    Writes OUT_DIR/metrics.json and OUT_DIR/detection_rate.png; returns the metrics dict.
    """
    state = load_checkpoint(model_path)
    model, cfg = model_from_checkpoint(state)
    dataset = load_split(cfg, split, data)
    dev = resolve_device(device)
    targets = restrict_targets(dataset_targets(dataset), dataset, classes)
    detections = predict_dataset(model, dataset, cfg.model.image_size, dev, batch_size, cfg.data.num_workers,
                                 multiscale=multiscale)
    k = model.num_boxes
    counts = state.get("prior_match_counts", torch.zeros(k, dtype=torch.int64))
    baseline = prior_detections(model.priors.cpu(), counts, dataset)
    skipped, detections, targets, baseline = drop_unreadable(dataset, detections, targets, baseline)
    metrics = {"dataset": dataset.name, "model": str(model_path), "skipped_images": skipped}
    metrics |= detection_rate(detections, targets, k)
    baseline_rate = detection_rate(baseline, targets, k)
    metrics["baselines"] = {"priors": {key: baseline_rate[key] for key in ("detection_rate", "curve")}}
    metrics |= subset_metrics(detections, targets, classes, multiscale)
    write_report(metrics, out_dir)
    return metrics


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
