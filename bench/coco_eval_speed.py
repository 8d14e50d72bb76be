"""Speed of our COCO box evaluation against pycocotools and faster-coco-eval, on one random fixture.

Builds a seeded fixture (default 2,000 images x 100 detections, ~7 ground truths per image with sides
from 4 to 400 px, 3% crowd regions), evaluates it with :class:`multibox.evaluation.coco.COCOMetric`,
pycocotools' ``COCOeval`` and faster-coco-eval's ``COCOeval_faster`` in one process, and prints the
wall times, the speed ratios and the largest difference among the 12 summary numbers.

Each timing covers the whole path from in-memory boxes to the 12 numbers: for ours ``update`` +
``compute``; for the two references building the ground-truth index, ``loadRes``, ``evaluate``,
``accumulate`` and ``summarize`` (turning our arrays into their json-like dicts is not timed).

    PYTHONPATH=src python bench/coco_eval_speed.py [--images 2000] [--classes 80] [--agnostic]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time

import numpy as np
import torch

from multibox.evaluation.coco import STAT_KEYS, COCOMetric

WIDTH, HEIGHT = 640.0, 480.0


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 4] pixel xyxy with sides log-uniform in [4, 400] px: all three COCO area ranges."""
    wh = np.exp(rng.uniform(np.log(4), np.log(400), size=(n, 2)))
    xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([WIDTH, HEIGHT]) - np.minimum(wh, [WIDTH, HEIGHT]))
    return np.concatenate([xy, xy + wh], axis=1)


def _image(rng: np.random.Generator, num_classes: int, num_dets: int) -> tuple[dict, dict]:
    """One image: ~7 ground truths; detections = 1-3 jittered copies of each + random boxes."""
    gt = _boxes(rng, int(rng.poisson(7)))
    gt_labels = rng.integers(0, num_classes, len(gt))
    src = np.repeat(np.arange(len(gt)), rng.integers(1, 4, len(gt)))[:num_dets]
    size = np.tile(gt[src, 2:] - gt[src, :2], 2)
    near = gt[src] + rng.normal(0, 0.1, (len(src), 4)) * size
    near[:, 2:] = np.maximum(near[:, 2:], near[:, :2] + 1)
    labels = np.where(rng.random(len(src)) < 0.8, gt_labels[src], rng.integers(0, num_classes, len(src)))
    far = _boxes(rng, num_dets - len(src))
    scores = np.concatenate([rng.uniform(0.3, 1, len(src)), rng.uniform(0, 0.7, len(far))])
    pred = {
        "boxes": torch.from_numpy(np.concatenate([near, far])).float(),
        # Scores rounded to 3 decimals, so equal scores (and COCOeval's tie order) occur.
        "scores": torch.from_numpy(np.round(scores, 3)).float(),
        "labels": torch.from_numpy(np.concatenate([labels, rng.integers(0, num_classes, len(far))])),
    }
    target = {"boxes": torch.from_numpy(gt).float(), "labels": torch.from_numpy(gt_labels),
              "ignore": torch.from_numpy(rng.random(len(gt)) < 0.03)}
    return pred, target


def make_fixture(num_images: int, num_classes: int, num_dets: int = 100, seed: int = 0) -> tuple[list, list]:
    """(predictions, targets) lists for ``num_images`` images, seeded."""
    rng = np.random.default_rng(seed)
    preds, targets = zip(*(_image(rng, num_classes, num_dets) for _ in range(num_images)))
    return list(preds), list(targets)


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    b = boxes.double()
    return torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], dim=1).tolist()


def to_coco_dicts(preds: list[dict], targets: list[dict], num_classes: int) -> tuple[dict, list[dict]]:
    """Ground-truth dataset dict (area = w * h) and results list, from the same float32 boxes."""
    images, anns, results = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets)):
        images.append({"id": i + 1, "width": WIDTH, "height": HEIGHT})
        for box, label, crowd in zip(_xywh(t["boxes"]), t["labels"].tolist(), t["ignore"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": label + 1, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": int(crowd)})
        for box, label, score in zip(_xywh(p["boxes"]), p["labels"].tolist(), p["scores"].double().tolist()):
            results.append({"image_id": i + 1, "category_id": label + 1, "bbox": box, "score": score})
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    return {"images": images, "annotations": anns, "categories": categories}, results


def run_ours(preds: list, targets: list, class_aware: bool) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    metric = COCOMetric(class_aware=class_aware)
    metric.update(preds, targets)
    stats = metric.compute()
    return time.perf_counter() - start, np.array([stats[k] for k in STAT_KEYS])


def run_reference(coco_cls, eval_cls, gt: dict, results: list, class_aware: bool) -> tuple[float, np.ndarray]:
    gt, results = copy.deepcopy(gt), copy.deepcopy(results)  # both libraries modify their inputs
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_cls()  # pycocotools' constructor only reads files; both accept this route
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = eval_cls(coco_gt, coco_gt.loadRes(results), "bbox")
        ev.params.useCats = int(class_aware)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return time.perf_counter() - start, np.asarray(ev.stats[:12], dtype=np.float64)


def _best_of(repeats: int, run) -> tuple[float, np.ndarray, list[float]]:
    """(fastest wall time, stats, all times) of ``repeats`` calls of ``run`` (the machine is shared)."""
    times, stats = [], None
    for _ in range(repeats):
        seconds, stats = run()
        times.append(seconds)
    return min(times), stats, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--agnostic", action="store_true", help="pool all classes (useCats=0)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours and faster-coco-eval (best is reported)")
    parser.add_argument("--skip-pycocotools", action="store_true")
    args = parser.parse_args()
    from faster_coco_eval import COCO as FasterCOCO, COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    class_aware = not args.agnostic
    preds, targets = make_fixture(args.images, args.classes)
    gt, results = to_coco_dicts(preds, targets, args.classes)
    print(f"fixture: {args.images} images, {len(results)} detections, {len(gt['annotations'])} ground truths, "
          f"{args.classes} classes, {'class-aware' if class_aware else 'class-agnostic (useCats=0)'}; "
          f"torch threads {torch.get_num_threads()}; best of {args.repeats} (pycocotools: 1 run)")
    t_ours, ours, all_ours = _best_of(args.repeats, lambda: run_ours(preds, targets, class_aware))
    t_fast, fast, all_fast = _best_of(
        args.repeats, lambda: run_reference(FasterCOCO, COCOeval_faster, gt, results, class_aware))
    print(f"ours             {t_ours:7.3f} s   runs: {', '.join(f'{t:.3f}' for t in all_ours)}")
    print(f"faster-coco-eval {t_fast:7.3f} s   runs: {', '.join(f'{t:.3f}' for t in all_fast)}")
    print(f"  faster-coco-eval / ours = {t_fast / t_ours:5.2f}x   max |stat diff| = {np.abs(fast - ours).max():.2e}")
    if not args.skip_pycocotools:
        t_ref, ref = run_reference(COCO, COCOeval, gt, results, class_aware)
        print(f"pycocotools      {t_ref:7.3f} s")
        print(f"  pycocotools / ours      = {t_ref / t_ours:5.2f}x   max |stat diff| = {np.abs(ref - ours).max():.2e}")
    print("ours: " + " ".join(f"{k}={v:.4f}" for k, v in zip(STAT_KEYS, ours)))


if __name__ == "__main__":
    main()
