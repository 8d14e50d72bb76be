"""A picture of predictions beside the ground truth, for a person to look at (as Ultralytics'
``val_batch0_labels.jpg`` / ``val_batch0_pred.jpg``, here one file of pairs).

``OUT/val_pred.jpg``: the first few readable images of the split, each as a pair "ground truth |
prediction" (ground truth in its classes' colours with their names; predictions scoring at least
:data:`MIN_SCORE`, at most :data:`MAX_BOXES`, with their scores), two pairs a row. Each image is
scaled so its longer side is :data:`PANE_SIDE` pixels before drawing, so small images (a 64 px
synthetic image) are upscaled enough to be seen and boxes and text are drawn at the shown size.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from multibox.data import BadImage, DetectionDataset
from multibox.reports.plots import annotation_sizes, draw_boxes

GRID_IMAGES = 8  # images shown
PAIRS_PER_ROW = 2
PANE_SIDE = 400  # pixels, the longer side of each shown image (>= 320: small images upscaled)
MIN_SCORE = 0.25  # predictions drawn (Ultralytics' default confidence)
MAX_BOXES = 10  # predictions drawn per image at most (the paper's top 10, §4.2.2)
GAP = 4  # pixels between panes


def scaled(image: Image.Image, boxes: np.ndarray, side: int = PANE_SIDE) -> tuple[Image.Image, np.ndarray]:
    """``image`` resized so its longer side is ``side`` pixels, and boxes [N, 4] (xyxy pixels) with it."""
    factor = side / max(image.width, image.height)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.BILINEAR), np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * factor


def titled(pane: Image.Image, title: str) -> Image.Image:
    """``pane`` under a white strip naming it."""
    _, size = annotation_sizes(pane.width, pane.height)
    font = ImageFont.load_default(size=size)
    strip = size + 8
    out = Image.new("RGB", (pane.width, pane.height + strip), (255, 255, 255))
    out.paste(pane, (0, strip))
    ImageDraw.Draw(out).text((4, 4), title, fill=(0, 0, 0), font=font)
    return out


def prediction_pair(image: Image.Image, record, det: dict, class_names: list[str]) -> Image.Image:
    """One image as "ground truth | prediction", side by side."""
    gt_image, gt_boxes = scaled(image, record.boxes * (image.width / record.width))
    truth = draw_boxes(gt_image, gt_boxes, labels=[class_names[c] for c in record.labels.tolist()],
                       class_ids=record.labels.tolist())
    boxes, scores = np.asarray(det["boxes"])[:MAX_BOXES], np.asarray(det["scores"])[:MAX_BOXES]
    pred_image, pred_boxes = scaled(image, boxes)
    labels = det.get("labels")
    ids = None if labels is None else np.asarray(labels)[:MAX_BOXES].tolist()
    names = None if ids is None else [class_names[c] if 0 <= c < len(class_names) else "?" for c in ids]
    shown = draw_boxes(pred_image, pred_boxes, scores, labels=names, class_ids=ids, min_score=MIN_SCORE)
    kept = int((scores >= MIN_SCORE).sum())
    panes = [titled(truth, f"{Path(record.path or record.image_id).name}: ground truth ({len(record.boxes)})"),
             titled(shown, f"prediction: {kept} of top {len(scores)} score >= {MIN_SCORE}")]
    pair = Image.new("RGB", (sum(p.width for p in panes) + GAP, max(p.height for p in panes)), (255, 255, 255))
    pair.paste(panes[0], (0, 0))
    pair.paste(panes[1], (panes[0].width + GAP, 0))
    return pair


def pick_pairs(dataset: DetectionDataset, detections: list[dict | None], count: int) -> list[Image.Image]:
    """The pairs of the first ``count`` images that have detections and can be read."""
    pairs = []
    for index, det in enumerate(detections):  # stops after ``count`` readable images
        if len(pairs) == count:
            break
        if det is None:
            continue
        try:
            image = dataset.load_image(index)
        except BadImage:
            continue
        pairs.append(prediction_pair(image, dataset.records[index], det, list(dataset.class_names)))
    return pairs


def write_prediction_grid(dataset: DetectionDataset, detections: list[dict | None], out_dir: str | Path,
                          count: int = GRID_IMAGES) -> Path | None:
    """OUT_DIR/val_pred.jpg (module docstring) from per-image detections ({"boxes" [N, 4] xyxy pixels,
    "scores" [N] sorted, "labels" [N] optional}; None: unreadable); None when no image could be shown."""
    pairs = pick_pairs(dataset, detections, count)
    if not pairs:
        return None
    rows = math.ceil(len(pairs) / PAIRS_PER_ROW)
    cell_w, cell_h = max(p.width for p in pairs) + 2 * GAP, max(p.height for p in pairs) + 2 * GAP
    grid = Image.new("RGB", (cell_w * min(len(pairs), PAIRS_PER_ROW), cell_h * rows), (255, 255, 255))
    for k, pair in enumerate(pairs):
        grid.paste(pair, ((k % PAIRS_PER_ROW) * cell_w + GAP, (k // PAIRS_PER_ROW) * cell_h + GAP))
    path = Path(out_dir) / "val_pred.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, quality=90)
    return path
