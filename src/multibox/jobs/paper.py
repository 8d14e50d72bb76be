"""`multibox paper`: the paper's tables and figures, reproduced in form on the embedded synthetic data.

One command trains three small networks on CPU and writes OUT/report.md with PNGs and OUT/results.json:

* **Fig. 1** (§4.3): detection rate of class "object" vs boxes per image, single scale (max center
  square) vs two scales (plus 3 x 3 windows of 60 %, :mod:`multibox.inference.windows`), priors baseline.
* **Table 1** (§4.2): per-class VOC AP (11-point, VOC2007) and mAP of the full detector, top 10 boxes
  after NMS 0.5, each scored by localizer confidence x classifier probability on its max square.
* **Table 2** (§4.4): det@5 / class@5 (ILSVRC-2012) with the classifier applied to the top 1, 3, 5,
  10, 25 windows (NMS 0.4, best box per class), and the classifier applied to the ground truth.
* **Table 2, first row** (§4.4.2): the one-box-per-class network (:mod:`multibox.modeling.one_box_per_class`),
  its top 5 classes with their boxes; and the paper's two claims about it, checked on the test images
  with one object per class (det@5) and with several objects of one class (detection rate).
* **Fig. 5** (§4.4.2): class-agnostic precision-recall of DeepMultiBox and of one box per class (its C
  boxes after NMS 0.5, footnote 3); of a localizer trained without one class, on that (unseen) class and
  on the seen ones, and of the full localizer on the same class; and across datasets: localizers trained
  on two synthetic datasets of disjoint shape sets, each evaluated on both (AP50 both ways).
* **Cost**: network evaluations and wall time per image for localizer + classifier at N = 10.

Training is a fixed number of steps (not minutes), so the numbers do not depend on the machine's speed;
``scale`` multiplies every step count (e.g. 0.05 for a smoke run). Networks already trained in OUT
are reused (a finished run resumes to its end at once).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image

from multibox.atomic import write_text_atomic
from multibox.config import Config
from multibox.data import DetectionDataset
from multibox.data.build import load_split
from multibox.data.synthetic import CLASS_NAMES, SyntheticDataset
from multibox.data.unseen import class_ids
from multibox.engine.checkpoint import load_checkpoint
from multibox.engine.precision import resolve_device
from multibox.engine.run_dir import last_checkpoint
from multibox.engine.tasks import Task, classifier_task, localizer_task, one_box_per_class_task
from multibox.engine.trainer import train
from multibox.evaluation.scoring import dataset_targets, detection_rate
from multibox.evaluation.voc import ClassAgnosticPR
from multibox.inference.detector import Detector
from multibox.inference.localizer import Localizer
from multibox.inference.one_box_per_class import OneBoxPerClassPredictor
from multibox.inference.predict import predict_dataset
from multibox.jobs.evaluate import evaluate
from multibox.jobs.paper_tables import ONE_BOX_ROW, TOP10_ROW, claims, repeated_class_targets, table1, table2, table2_detections

__all__ = ["ONE_BOX_ROW", "TOP10_ROW", "Plan", "claims", "paper", "repeated_class_targets"]  # the tests' names too
from multibox.reports.paper import write_report
from multibox.reports.plots import plot_detection_rate, plot_pr_curves


@dataclass
class Plan:
    """What `paper` trains: step counts, the held-out class, how many images are timed."""

    localizer_steps: int = 1000  # the demo's 1,200 would not leave time for the other two in ~20 CPU minutes
    classifier_steps: int = 1000
    unseen_steps: int = 1000  # as many as the full localizer, so Fig. 5's third curve is a fair reference
    one_box_steps: int = 1000  # the one-box-per-class network: the localizer's budget, same crops and batch
    cross_steps: int = 500  # each cross-dataset localizer: half, as its data has 2-3 of the 5 shapes
    unseen_class: str = "triangle"
    # The two synthetic "datasets" of the cross-dataset test: disjoint shape sets, the richer one first.
    cross_shapes: tuple[tuple[str, ...], ...] = (("triangle", "diamond", "cross"), ("rectangle", "ellipse"))
    timed_images: int = 100
    device: str = "auto"

    def scaled(self, scale: float) -> Plan:
        """The plan with every step count multiplied by ``scale`` (at least 1 step)."""
        names = ("localizer_steps", "classifier_steps", "unseen_steps", "one_box_steps", "cross_steps")
        steps = {k: max(1, round(getattr(self, k) * scale)) for k in names}
        return Plan(**(asdict(self) | steps))


def localizer_config(plan: Plan, steps: int, exclude: list[str] | None = None) -> Config:
    """The paper's localizer shrunk for the CPU: the tiny CNN at 128 px with the fc head over K = 100
    k-means priors, Adagrad (the settings of bench/sweep_demo.py, docs/demo_sweep.md)."""
    cfg = Config.preset("paper")
    cfg.model.backbone, cfg.model.image_size, cfg.model.hidden_dim, cfg.model.grid = "tiny", 128, 512, 8
    cfg.train.steps, cfg.train.batch_size, cfg.train.lr, cfg.train.checkpoint_every = steps, 32, 0.003, 400
    cfg.data.synthetic_preload = True
    cfg.train.device, cfg.data.exclude_classes = plan.device, list(exclude or [])
    return cfg


def classifier_config(plan: Plan) -> Config:
    """The classifier: the tiny CNN at 64 px on max-square regions, 1 : 2 object : background crops."""
    cfg = Config.preset("paper")
    cfg.model.backbone, cfg.model.image_size, cfg.model.hidden_dim, cfg.model.grid = "tiny", 64, 256, 4
    cfg.train.steps, cfg.train.batch_size, cfg.train.lr, cfg.train.device = plan.classifier_steps, 64, 0.01, plan.device
    cfg.train.checkpoint_every, cfg.data.synthetic_preload = 500, True
    return cfg


def train_or_reuse(cfg: Config, out: Path, task=localizer_task) -> tuple[Path, float]:
    """Train into ``out``, resuming a run found there, or reuse it if it is finished. Returns the
    checkpoint and the training's wall-clock seconds over all sessions (kept in OUT/train_seconds.json)."""
    record, checkpoint = out / "train_seconds.json", last_checkpoint(out)
    before = json.loads(record.read_text())["seconds"] if record.is_file() else 0.0
    if checkpoint is not None and load_checkpoint(checkpoint)["step"] >= cfg.train.steps:
        return checkpoint, before
    start = time.perf_counter()
    path = train(cfg, out, resume=checkpoint is not None, make_task=task, exist_ok=True)  # exist_ok: a run cut before its first checkpoint
    seconds = before + time.perf_counter() - start
    write_text_atomic(record, json.dumps({"seconds": seconds}))
    return path, seconds


def one_box_per_class_config(plan: Plan) -> Config:
    """The one-box-per-class network: the localizer's backbone, input, crops, optimizer and budget."""
    cfg = localizer_config(plan, plan.one_box_steps)
    cfg.model.kind = "one-box-per-class"
    return cfg


def shape_dataset(split: str, shapes: tuple[str, ...], preload: bool = False) -> SyntheticDataset:
    """The synthetic split drawing only ``shapes`` (the embedded data's sizes and seed)."""
    return SyntheticDataset(split, preload=preload, shapes=class_ids(CLASS_NAMES, list(shapes), "cross_shapes"))


def shape_task(shapes: tuple[str, ...]) -> Callable[[Config, DetectionDataset, dict | None], Task]:
    """A make_task training the localizer on :func:`shape_dataset` ("train", ``shapes``) in place of the
    configured data; the checkpoint names it ("training_data")."""

    def make(cfg: Config, dataset: DetectionDataset, state: dict | None) -> Task:
        data = shape_dataset("train", shapes, preload=True)
        task = localizer_task(cfg, data, state)
        task.extras["training_data"] = data.name
        return task

    return make


def cross_config(plan: Plan) -> Config:
    """A cross-dataset localizer's config; the configured data is not rendered (the task brings its own)."""
    cfg = localizer_config(plan, plan.cross_steps)
    cfg.data.synthetic_preload = False
    return cfg


def train_all(out: Path, plan: Plan) -> dict[str, tuple[Path, float]]:
    """The localizer, the classifier, the localizer without ``plan.unseen_class``, the one-box-per-class
    network and one localizer per shape set of ``plan.cross_shapes`` ("cross0", "cross1")."""
    models = {
        "localizer": train_or_reuse(localizer_config(plan, plan.localizer_steps), out / "localizer"),
        "classifier": train_or_reuse(classifier_config(plan), out / "classifier", classifier_task),
        "unseen": train_or_reuse(localizer_config(plan, plan.unseen_steps, [plan.unseen_class]), out / "unseen"),
        "one_box_per_class": train_or_reuse(one_box_per_class_config(plan), out / "one_box_per_class",
                                            one_box_per_class_task),
    }
    for i, shapes in enumerate(plan.cross_shapes):
        models[f"cross{i}"] = train_or_reuse(cross_config(plan), out / f"cross{i}", shape_task(shapes))
    return models


# ------------------------------------------------------------------------------------------ figure 1


def figure1(localizer: Path, out: Path, device: str) -> dict:
    """Detection-rate curves of the localizer at one and at two scales (§4.3), with the priors baseline."""
    single = evaluate(localizer, out / "fig1" / "single", split="test", device=device)
    multi = evaluate(localizer, out / "fig1" / "multiscale", split="test", device=device, multiscale=True)
    curves = {"max-center crop": single["curve"], "max-center crop + 3x3 windows of 60%": multi["curve"],
              "priors only (baseline)": single["baselines"]["priors"]["curve"]}
    plot_detection_rate(curves, out / "fig1_detection_rate.png")
    return {"single": single["detection_rate"], "multiscale": multi["detection_rate"],
            "priors": single["baselines"]["priors"]["detection_rate"], "num_objects": single["num_objects"]}


# ------------------------------------------------------------------------------------------ figure 5


def figure5(models: dict, plan: Plan, names: list[str], out: Path, device: str) -> dict:
    """Class-agnostic PR (Fig. 5): the localizer trained without ``plan.unseen_class`` on that class and
    on the seen classes, and the full localizer on that class (other objects ignored in each)."""
    unseen, seen = [plan.unseen_class], [n for n in names if n != plan.unseen_class]
    runs = {f"trained without {unseen[0]}: on {unseen[0]} (unseen)": (models["unseen"][0], unseen),
            f"trained without {unseen[0]}: on the other classes (seen)": (models["unseen"][0], seen),
            f"trained on all classes: on {unseen[0]}": (models["localizer"][0], unseen)}
    results = {}
    for i, (label, (model, classes)) in enumerate(runs.items()):
        m = evaluate(model, out / "fig5" / str(i), split="test", device=device, classes=classes)
        results[label] = {"AP": m["class_agnostic_pr"]["AP"], "detection_rate": m["detection_rate"],
                          "num_objects": m["num_objects"], "precision": m["class_agnostic_pr"]["precision"],
                          "recall": m["class_agnostic_pr"]["recall"]}
    plot_pr_curves(results, out / "fig5_unseen_pr.png", "Class-agnostic precision-recall, IoU >= 0.5")
    return results


AGNOSTIC_NMS = 0.5  # class-agnostic boxes: the NMS of `evaluate` and Fig. 1, for both models (footnote 3)


def pr_entry(detections: list[dict], targets: list[dict]) -> dict:
    """Class-agnostic AP50 (VOC 11-point), its curve, the detection rates and the number of objects."""
    metric = ClassAgnosticPR()
    metric.update(detections, targets)
    rates = detection_rate(detections, targets, max_k=100)
    return metric.compute() | {"detection_rate": rates["detection_rate"], "num_objects": rates["num_objects"]}


def agnostic_detections(models: dict, dataset: DetectionDataset, device: str) -> dict[str, list[dict]]:
    """Class-agnostic boxes on ``dataset``: DeepMultiBox's localizer (NMS 0.5, all K), and one box per class
    (its C boxes, NMS 0.5, scored by their class probability)."""
    localizer = Localizer.from_checkpoint(models["localizer"][0], device)
    one_box = OneBoxPerClassPredictor.from_checkpoint(models["one_box_per_class"][0], device, nms_iou=AGNOSTIC_NMS)
    return {"DeepMultiBox": predict_dataset(localizer, dataset, num_workers=0),
            "one box per class": predict_dataset(one_box, dataset, num_workers=0)}


def figure5_models(agnostic: dict[str, list[dict]], targets: list[dict], out: Path) -> dict:
    """Fig. 5: class-agnostic precision-recall of DeepMultiBox and of one box per class, every test object."""
    results = {label: pr_entry(dets, targets) for label, dets in agnostic.items()}
    plot_pr_curves(results, out / "fig5_one_box_per_class_pr.png", "Class-agnostic PR, IoU >= 0.5: all test objects")
    return results


def cross_dataset(models: dict, plan: Plan, out: Path, device: str) -> dict:
    """§4.4.2's cross-dataset test (ImageNet -> VOC and back): each localizer trained on one shape set of
    ``plan.cross_shapes``, evaluated (class-agnostic AP50) on the test split of each shape set."""
    names = [",".join(shapes) for shapes in plan.cross_shapes]
    tests = [shape_dataset("test", shapes, preload=True) for shapes in plan.cross_shapes]
    results = {}
    for i, trained in enumerate(names):
        localizer = Localizer.from_checkpoint(models[f"cross{i}"][0], device)
        for test, name in zip(tests, names):
            entry = pr_entry(predict_dataset(localizer, test, num_workers=0), dataset_targets(test))
            results[f"trained on {trained}: on {name}"] = entry | {"train": trained, "test": name}
    plot_pr_curves(results, out / "fig5_cross_dataset_pr.png", "Class-agnostic PR, IoU >= 0.5: across shape sets")
    return results


# ---------------------------------------------------------------------------------------------- cost


@dataclass
class Timings:
    """Per-image seconds of each stage and the number of classifier crops."""

    localizer: list[float] = field(default_factory=list)
    classifier: list[float] = field(default_factory=list)
    crops: list[int] = field(default_factory=list)

    def summary(self, localizer_passes: int) -> dict:
        ms = {k: 1000 * statistics.median(getattr(self, k)) for k in ("localizer", "classifier")}
        crops = statistics.mean(self.crops)
        return {"localizer_ms": ms["localizer"], "classifier_ms": ms["classifier"],
                "total_ms": ms["localizer"] + ms["classifier"], "localizer_inputs": localizer_passes,
                "classifier_crops": crops, "network_evaluations": localizer_passes + crops}


def time_image(detector: Detector, image: Image.Image, n: int) -> tuple[float, float, int]:
    """(localizer seconds, classifier seconds, crops) of one image: its N crops in one classifier pass."""
    start = time.perf_counter()
    [(boxes, conf)] = detector.localizer.predict_batch([image], n)
    located = time.perf_counter()
    detector.score_boxes([image], [boxes], [conf])
    return located - start, time.perf_counter() - located, len(boxes)


def time_detector(detector: Detector, images: list[Image.Image], n: int = 10, repeats: int = 3) -> Timings:
    """Wall time per image, one image at a time, after 3 warm-ups; each image's fastest of ``repeats``
    passes, so that other jobs on a shared machine inflate the figures less."""
    for image in images[:3]:
        time_image(detector, image, n)
    runs = [[time_image(detector, image, n) for image in images] for _ in range(repeats)]  # [R][I]
    timings = Timings()
    for per_image in zip(*runs):  # per image, its repeats
        timings.localizer.append(min(r[0] for r in per_image))
        timings.classifier.append(min(r[1] for r in per_image))
        timings.crops.append(per_image[0][2])
    return timings


def cost(models: dict, images: list[Image.Image], device: str) -> dict:
    """Network evaluations and median wall time per image at N = 10, at one and at two scales."""
    out = {"torch_threads": torch.get_num_threads(), "images": len(images), "load_average": os.getloadavg()[0]}
    for label, multiscale, passes in (("single scale", False, 1), ("two scales", True, 10)):
        detector = Detector.from_checkpoints(models["localizer"][0], models["classifier"][0], device, 10,
                                             multiscale=multiscale)
        out[label] = time_detector(detector, images).summary(passes)
    return out


# -------------------------------------------------------------------------------------------- report


def embedded_test_split() -> tuple[DetectionDataset, list[Image.Image], list[dict]]:
    """The embedded test split (rendered once: it is read by several evaluations), its images and targets."""
    cfg = Config()
    cfg.data.split, cfg.data.synthetic_preload = "test", True
    dataset = load_split(cfg, "test")
    return dataset, [dataset.load_image(i) for i in range(len(dataset))], dataset_targets(dataset)


def paper(out_dir: str | Path = "runs/paper", scale: float = 1.0, device: str = "auto",
          unseen_class: str = "triangle") -> Path:
    """Train, evaluate and write OUT/report.md, OUT/results.json and the figures; returns the report path."""
    out, dev = Path(out_dir), resolve_device(device)
    plan = Plan(unseen_class=unseen_class, device=device).scaled(scale)
    dataset, images, targets = embedded_test_split()
    names = list(dataset.class_names)
    class_ids(names, [unseen_class], "--unseen-class")  # fail before training
    models = train_all(out, plan)
    guesses = table2_detections(models, dataset, images, targets, dev)
    agnostic = agnostic_detections(models, dataset, dev)
    results = {"plan": asdict(plan), "scale": scale, "dataset": dataset.name, "num_images": len(images),
               "training_seconds": {k: t for k, (_, t) in models.items()},
               "fig1": figure1(models["localizer"][0], out, device),
               "table1": table1(models, images, targets, names, dev),
               "table2": table2(guesses, targets), "claims": claims(guesses, agnostic, targets),
               "fig5": figure5(models, plan, names, out, device),
               "fig5_models": figure5_models(agnostic, targets, out),
               "cross_dataset": cross_dataset(models, plan, out, dev),
               "cost": cost(models, images[: plan.timed_images], dev)}
    write_text_atomic(out / "results.json", json.dumps(results, indent=1))
    return write_report(results, names, out)
