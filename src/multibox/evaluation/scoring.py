"""Scoring one method's per-image detections against a dataset split's ground truth.

Detections come in image pixels (the inference maps them back from the network's windows) and are
compared with the records' pixel boxes, so the numbers are in the frame users annotate in.

:func:`score` turns one method's per-image detections into every number the reports show: the
detection rate vs boxes per image (Fig. 1), overall and by object size; the class-agnostic
precision-recall curve and its AP at IoU 0.5 (Fig. 5); COCO-style class-agnostic proposal AP/AR; and,
when the detections carry class labels, per-class VOC AP (Table 1) and ILSVRC det@5 / class@5 (Table 2).
Shapes: N detections and M ground-truth objects per image.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from multibox.data import DetectionDataset
from multibox.evaluation.coco import COCOMetric
from multibox.evaluation.detection_rate import DetectionRate, DetectionRateBySize
from multibox.evaluation.ilsvrc import ILSVRCMetric
from multibox.evaluation.voc import ClassAgnosticPR, VOCMetric


def dataset_targets(dataset: DetectionDataset) -> list[dict[str, Tensor]]:
    """Per-image ground truth: {"boxes": Tensor[M, 4] pixel xyxy, "labels": Tensor[M], "ignore": Tensor[M]}."""
    return [{"boxes": torch.from_numpy(r.boxes), "labels": torch.from_numpy(r.labels),
             "ignore": torch.from_numpy(r.ignore)} for r in dataset.records]


def drop_unreadable(dataset: DetectionDataset, detections: list, *per_image: list) -> tuple[int, list, ...]:
    """Leave images that could not be read (None in ``detections`` or in any other per-image list)
    out of every list, and say how many on stderr. Returns (skipped, detections, *per_image)."""
    lists = (detections, *per_image)
    keep = [i for i in range(len(detections)) if all(items[i] is not None for items in lists)]
    skipped = len(detections) - len(keep)
    if skipped:
        print(f"{dataset.name}: {skipped} unreadable image(s) left out of the evaluation", file=sys.stderr)
    return (skipped, *([items[i] for i in keep] for items in lists))


def detection_rate(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], max_k: int) -> dict:
    metric = DetectionRate(max_k)
    metric.update(detections, targets)
    return metric.compute()


#: Keys of a scored method in metrics.json (the top level adds num_images / num_objects and provenance).
SCORE_KEYS = ("detection_rate", "curve", "detection_rate_by_size", "pr_ap50", "coco", "voc", "ilsvrc")


@dataclass
class Scored:
    """One method's numbers: ``metrics`` (JSON-ready) and its PR curve {"precision": [..], "recall": [..]},
    kept out of metrics.json because it has one point per detection."""

    metrics: dict
    pr_curve: dict


def has_labels(detections: list[dict[str, Tensor]]) -> bool:
    """Whether every image's detections carry class ``labels`` (a classifier has run)."""
    return bool(detections) and all(d.get("labels") is not None for d in detections)


def finite(value: float) -> float | None:
    """NaN (undefined, e.g. AP without objects) as None, so metrics.json stays valid JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


def rate_metrics(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], max_k: int) -> dict:
    """num_images, num_objects, detection_rate, curve and detection_rate_by_size (Fig. 1)."""
    metric = DetectionRateBySize(max(max_k, 1))
    metric.update(detections, targets)
    return metric.compute()


def pr_metrics(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> tuple[float | None, dict]:
    """Class-agnostic AP at IoU 0.5 (VOC2007 11-point) and its PR curve (Fig. 5)."""
    metric = ClassAgnosticPR()
    metric.update(detections, targets)
    out = metric.compute()
    curve = {key: [round(v, 6) for v in out[key]] for key in ("precision", "recall")}
    return finite(out["AP"]), curve


def coco_metrics(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> dict:
    """COCO AP/AR with every class pooled (``useCats=0``, proposal scoring); -1 where undefined."""
    metric = COCOMetric(class_aware=False)
    metric.update([{"boxes": d["boxes"], "scores": d["scores"]} for d in detections], targets)
    return metric.compute()


def best_per_label(detection: dict[str, Tensor]) -> dict[str, Tensor]:
    """The highest-scoring box of each label (the ILSVRC rule of one box per guessed class, §4.4.1)."""
    order = torch.argsort(torch.as_tensor(detection["scores"]), descending=True, stable=True).tolist()
    labels = torch.as_tensor(detection["labels"]).tolist()
    keep, seen = [], set()
    for i in order:
        if labels[i] not in seen:
            seen.add(labels[i])
            keep.append(i)
    return {key: torch.as_tensor(value)[keep] for key, value in detection.items()}


def labelled_metrics(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]],
                     class_names: list[str]) -> dict:
    """Per-class VOC AP (Table 1, 11-point) and det@5 / class@5 (Table 2) of labelled detections."""
    # A label the dataset lacks (-1) counts for no class; ILSVRC's (image, label) keys assume labels >= 0.
    detections = [{key: torch.as_tensor(v)[torch.as_tensor(d["labels"]) >= 0] for key, v in d.items()} for d in detections]
    voc = VOCMetric()
    voc.update(detections, targets)
    out = voc.compute()
    name = lambda c: class_names[c] if 0 <= c < len(class_names) else str(c)  # noqa: E731
    ilsvrc = ILSVRCMetric(top_k=5)
    ilsvrc.update([best_per_label(d) for d in detections], targets)
    return {"voc": {"mAP": finite(out["mAP"]), "ap": {name(c): ap for c, ap in out["ap"].items()}},
            "ilsvrc": {key: finite(value) for key, value in ilsvrc.compute().items()}}


def score(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], max_k: int,
          class_names: Sequence[str] = ()) -> Scored:
    """Every number of one method. ``detections`` per image: {"boxes": Tensor[N, 4] pixel xyxy,
    "scores": Tensor[N] sorted descending, "labels": Tensor[N] (optional)}; ``max_k``: the most boxes
    per image the detection-rate curve counts."""
    metrics = rate_metrics(detections, targets, max_k)
    metrics["pr_ap50"], curve = pr_metrics(detections, targets)
    metrics["coco"] = coco_metrics(detections, targets)
    if has_labels(detections):
        metrics |= labelled_metrics(detections, targets, list(class_names))
    return Scored(metrics, curve)


def method_summary(scored: Scored) -> dict:
    """The per-method keys of a scored run, as stored under metrics.json's ``baselines``."""
    return {key: scored.metrics[key] for key in SCORE_KEYS if key in scored.metrics}
