"""Random COCO-style fixtures and a bridge to pycocotools, shared by the COCO metric tests.

pycocotools is a test-only dependency: it is the reference the metric must equal, never imported
from ``src/``.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np


def random_fixture(seed: int, num_images: int = 30, num_classes: int = 4, crowd_rate: float = 0.1,
                   score_decimals: int = 1) -> tuple[list[dict], list[dict]]:
    """(predictions, targets) as numpy dicts, pixel xyxy, designed to hit every COCOeval branch.

    Includes images without ground truth, images without detections, one image with more than 100
    detections, crowd regions, duplicated ground-truth boxes (IoU ties), tied scores (rounded to
    ``score_decimals``), and boxes of all three area ranges.
    """
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(num_images):
        gt_boxes, gt_labels, gt_ignore = _random_targets(rng, num_classes, crowd_rate, empty=i % 7 == 3)
        num_random = 150 if i == 5 else int(rng.integers(0, 12))
        det = _random_detections(rng, gt_boxes, gt_labels, num_classes, num_random, score_decimals)
        if i % 9 == 4:  # an image without any detection
            det = {k: v[:0] for k, v in det.items()}
        preds.append(det)
        targets.append({"boxes": gt_boxes, "labels": gt_labels, "ignore": gt_ignore})
    return preds, targets


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 4] xyxy in a 640 x 480 image, sides log-uniform in [3, 300] px (small to large)."""
    wh = np.exp(rng.uniform(np.log(3), np.log(300), size=(n, 2)))
    xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([640.0, 480.0]) - wh)
    return np.round(np.concatenate([xy, xy + wh], axis=1), 2)


def _random_targets(rng, num_classes: int, crowd_rate: float, empty: bool):
    n = 0 if empty else int(rng.integers(1, 9))
    boxes = _random_boxes(rng, n)
    labels = rng.integers(0, num_classes, size=n)
    if n >= 2 and rng.random() < 0.4:  # an exact duplicate box: equal IoUs, COCOeval's tie order
        boxes = np.concatenate([boxes, boxes[:1]])
        labels = np.concatenate([labels, labels[:1] if rng.random() < 0.5 else (labels[:1] + 1) % num_classes])
    ignore = rng.random(len(boxes)) < crowd_rate
    return boxes, labels.astype(np.int64), ignore


def _random_detections(rng, gt_boxes, gt_labels, num_classes: int, num_random: int, decimals: int) -> dict:
    """Jittered copies of the ground truths (0-3 each, some with a wrong label) plus random boxes."""
    copies = rng.integers(0, 4, size=len(gt_boxes))
    src = np.repeat(np.arange(len(gt_boxes)), copies)
    size = np.repeat(gt_boxes[src, 2:] - gt_boxes[src, :2], 2, axis=0).reshape(-1, 4)
    jitter = gt_boxes[src] + rng.normal(0, 0.12, size=(len(src), 4)) * size
    x1y1 = np.minimum(jitter[:, :2], jitter[:, 2:] - 1)
    jitter = np.round(np.concatenate([x1y1, jitter[:, 2:]], axis=1), 2)
    labels = np.where(rng.random(len(src)) < 0.8, gt_labels[src], rng.integers(0, num_classes, len(src)))
    boxes = np.concatenate([jitter, _random_boxes(rng, num_random)])
    labels = np.concatenate([labels, rng.integers(0, num_classes, num_random)]).astype(np.int64)
    scores = np.round(rng.uniform(0, 1, len(boxes)), decimals)
    perm = rng.permutation(len(boxes))
    return {"boxes": boxes[perm], "scores": scores[perm], "labels": labels[perm]}


def to_coco(preds: list[dict], targets: list[dict]) -> tuple[dict, list[dict]]:
    """(ground-truth dataset dict, detection results list) in COCO json form; area = w * h."""
    images, anns, results = [], [], []
    labels = sorted({int(v) for t in targets for v in t["labels"]} | {int(v) for p in preds for v in p["labels"]})
    for i, (p, t) in enumerate(zip(preds, targets)):
        images.append({"id": i + 1, "width": 640, "height": 480})
        for box, label, ignore in zip(t["boxes"], t["labels"], t["ignore"]):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                         "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": int(ignore)})
        for box, label, score in zip(p["boxes"], p["labels"], p["scores"]):
            results.append({"image_id": i + 1, "category_id": int(label) + 1, "score": float(score),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
    gt = {"images": images, "annotations": anns, "categories": [{"id": c + 1, "name": str(c)} for c in labels]}
    return gt, results


def pycocotools_eval(preds: list[dict], targets: list[dict], use_cats: bool):
    """The finished pycocotools COCOeval (stats, eval["precision"], eval["recall"]) on the fixture."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_dict, results = to_coco(preds, targets)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev
