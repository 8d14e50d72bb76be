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
from torch import Tensor

from multibox.atomic import write_text_atomic
from multibox.config import Config
from multibox.data import DetectionDataset
from multibox.data.build import load_split
from multibox.data.synthetic import CLASS_NAMES, SyntheticDataset
from multibox.data.unseen import class_ids, only_classes
from multibox.engine.checkpoint import load_checkpoint
from multibox.engine.precision import resolve_device
from multibox.engine.run_dir import last_checkpoint
from multibox.engine.tasks import Task, classifier_task, localizer_task, one_box_per_class_task
from multibox.engine.trainer import train
from multibox.evaluation.ilsvrc import ILSVRCMetric
from multibox.evaluation.scoring import dataset_targets, detection_rate
from multibox.evaluation.voc import ClassAgnosticPR, VOCMetric
from multibox.inference.detector import Detector
from multibox.inference.localizer import Localizer
from multibox.inference.one_box_per_class import OneBoxPerClassPredictor
from multibox.inference.predict import predict_dataset
from multibox.jobs.evaluate import evaluate
from multibox.reports.paper import write_report
from multibox.reports.plots import plot_detection_rate, plot_pr_curves

TOP_NS = (1, 3, 5, 10, 25)  # Table 2's window counts


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


# ----------------------------------------------------------------------------------- tables 1 and 2


def localize(detector: Detector, images: list[Image.Image], top_n: int, batch: int = 32) -> list[tuple[Tensor, Tensor]]:
    """The detector's localizer boxes (pixel xyxy, Tensor[N, 4]) and confidences (Tensor[N]) per image."""
    located = []
    for start in range(0, len(images), batch):
        located += detector.localizer.predict_batch(images[start : start + batch], top_n)
    return located


def score_all(detector: Detector, images: list[Image.Image], located: list[tuple[Tensor, Tensor]],
              batch: int = 32) -> list[dict[str, Tensor]]:
    """:meth:`Detector.score_boxes` over every image, ``batch`` images (their crops in one pass) at a time."""
    out = []
    for s in range(0, len(images), batch):
        part = located[s : s + batch]
        out += detector.score_boxes(images[s : s + batch], [b for b, _ in part], [c for _, c in part])
    return out


def ground_truth_boxes(targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
    """Each image's non-ignored ground-truth boxes as "located" boxes of confidence 1."""
    return [(t["boxes"][~t["ignore"]], torch.ones(int((~t["ignore"]).sum()))) for t in targets]


def voc_row(detections: list[dict], targets: list[dict], names: list[str]) -> dict:
    """{class name: AP, "mAP": mAP} of labelled detections (VOC 2007 11-point AP)."""
    metric = VOCMetric()
    metric.update(detections, targets)
    result = metric.compute()
    return {names[c]: ap for c, ap in result["ap"].items()} | {"mAP": result["mAP"]}


def table1(models: dict, images: list[Image.Image], targets: list[dict], names: list[str], device: str) -> dict:
    """Per-class VOC AP and mAP of the full detector, top 10 boxes, at one and at two scales, and of the
    classifier applied to the ground-truth boxes (what a perfect localizer would leave)."""
    rows = {}
    for label, multiscale in (("DeepMultiBox", False), ("DeepMultiBox, two scales", True)):
        detector = Detector.from_checkpoints(models["localizer"][0], models["classifier"][0], device, 10, "voc",
                                             multiscale=multiscale)
        rows[label] = voc_row(score_all(detector, images, localize(detector, images, 10)), targets, names)
    rows["Classify GT directly"] = voc_row(score_all(detector, images, ground_truth_boxes(targets)), targets, names)
    return rows


def ilsvrc_rates(detections: list[dict], targets: list[dict]) -> dict:
    """det@5, class@5, det@1, class@1 of per-image (label, box) guesses."""
    out = {}
    for k in (5, 1):
        metric = ILSVRCMetric(top_k=k)
        metric.update(detections, targets)
        out |= {key: v for key, v in metric.compute().items() if "@" in key and "error" not in key}
    return out


ONE_BOX_ROW, TOP10_ROW = "One-box-per-class", "DeepMultiBox, top 10 windows"


def one_box_guesses(model: Path, dataset: DetectionDataset, device: str) -> list[dict]:
    """Per image, every class's box of the one-box-per-class network with its label, best class first
    (the metric keeps the top 5: one box per label, as the challenge allows)."""
    return predict_dataset(OneBoxPerClassPredictor.from_checkpoint(model, device), dataset, num_workers=0)


def table2_detections(models: dict, dataset: DetectionDataset, images: list[Image.Image], targets: list[dict],
                      device: str) -> dict[str, list[dict]]:
    """Table 2's rows as per-image labelled guesses: one box per class, the classifier on the ground
    truth, and on the top N localizer windows (NMS 0.4, best box per class)."""
    detector = Detector.from_checkpoints(models["localizer"][0], models["classifier"][0], device, max(TOP_NS), "ilsvrc")
    located = localize(detector, images, max(TOP_NS))  # NMS 0.4 once; the top N are prefixes of the top 25
    rows = {ONE_BOX_ROW: one_box_guesses(models["one_box_per_class"][0], dataset, device),
            "Classify GT directly": score_all(detector, images, ground_truth_boxes(targets))}
    for n in TOP_NS:
        top = [(b[:n], c[:n]) for b, c in located]
        rows[f"DeepMultiBox, top {n} window{'s' if n > 1 else ''}"] = score_all(detector, images, top)
    return rows


def table2(detections: dict[str, list[dict]], targets: list[dict]) -> dict:
    """Table 2: ILSVRC rates of each row's guesses."""
    return {label: ilsvrc_rates(dets, targets) for label, dets in detections.items()}


# ------------------------------------------------------------------ the claims about one box per class


def instance_counts(target: dict) -> Tensor:
    """Objects (not ignored) per class of one image's target, Tensor[C'] over the classes present."""
    return torch.unique(target["labels"][~target["ignore"]], return_counts=True)[1]


def repeated_class_targets(targets: list[dict]) -> tuple[list[int], list[dict]]:
    """The images with several objects of one class, and their targets with every object of a class
    that appears once marked ignore (only the repeated classes' objects count)."""
    keep, out = [], []
    for i, t in enumerate(targets):  # a loop over images
        labels, counts = torch.unique(t["labels"][~t["ignore"]], return_counts=True)
        if bool((counts > 1).any()):
            keep.append(i)
            out.append(only_classes([t], labels[counts > 1].tolist())[0])
    return keep, out


def rate_at(rates: dict, k: int) -> float:
    """The detection rate at k boxes of :func:`multibox.evaluation.scoring.detection_rate`'s result
    (at its last point when fewer boxes were given)."""
    curve = rates["curve"]
    return curve[min(k, len(curve)) - 1] if curve else float("nan")


def claims(table2_dets: dict[str, list[dict]], agnostic: dict[str, list[dict]], targets: list[dict]) -> dict:
    """§4.4.2's two claims on our test images: det@5 of one box per class and of DeepMultiBox (top 10
    windows) on the images with one object per class; and on the images with several objects of one
    class, the detection rate of those classes' objects (IoU >= 0.5, any box) by each model's class-agnostic
    boxes (one box per class: its C boxes after NMS; DeepMultiBox: its top 5 and top 100)."""
    single = [i for i, t in enumerate(targets) if len(instance_counts(t)) and bool((instance_counts(t) == 1).all())]
    det5 = {label: ilsvrc_rates([table2_dets[label][i] for i in single], [targets[i] for i in single])["det@5"]
            for label in (ONE_BOX_ROW, TOP10_ROW)}
    several, repeated = repeated_class_targets(targets)
    rates = {label: detection_rate([dets[i] for i in several], repeated, max_k=100) for label, dets in agnostic.items()}
    one_box, multibox = rates["one box per class"], rates["DeepMultiBox"]
    return {"one_object_per_class": {"images": len(single), "det@5": det5},
            "several_of_a_class": {"images": len(several), "objects": multibox["num_objects"],
                                   "detection_rate": {"one box per class (all its boxes)": rate_at(one_box, 100),
                                                      "DeepMultiBox, top 5": rate_at(multibox, 5),
                                                      "DeepMultiBox, top 100": rate_at(multibox, 100)}}}


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
