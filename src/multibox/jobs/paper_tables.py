"""`multibox paper`'s Tables 1 and 2 and the paper's claims about the one-box-per-class network
(:mod:`multibox.jobs.paper` trains the networks and writes the report).

* **Table 1** (§4.2): per-class VOC AP and mAP of the full detector at N = 10.
* **Table 2** (§4.4): det@5 / class@5 with the classifier on the top 1 ... 25 windows, on the ground
  truth, and the one-box-per-class network's top 5 classes (§4.4.2).
* **The claims**: det@5 on the images with one object per class; the detection rate of objects whose
  class appears several times in an image.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from multibox.data import DetectionDataset
from multibox.data.unseen import only_classes
from multibox.evaluation.ilsvrc import ILSVRCMetric
from multibox.evaluation.scoring import detection_rate
from multibox.evaluation.voc import VOCMetric
from multibox.inference.detector import Detector
from multibox.inference.one_box_per_class import OneBoxPerClassPredictor
from multibox.inference.predict import predict_dataset

TOP_NS = (1, 3, 5, 10, 25)  # Table 2's window counts


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
