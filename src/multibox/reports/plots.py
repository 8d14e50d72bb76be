"""Figures: detection-rate curves (the paper's Fig. 1), class-agnostic precision-recall curves (Fig. 5)
with each curve's AP in the legend, and images with boxes drawn.

Drawn boxes are sized to the image (line width and label text grow with it, as Ultralytics'
annotator does), each class in its own colour of a fixed palette (matplotlib's tab10), each label
written on a box filled with that colour in black or white, whichever contrasts more, so it reads
on any background. Scores are written with 2 decimals (0.87, never 8.7e-01). Pictures for a person
(:func:`draw_for_viewing`) upscale small images first, so boxes and text are drawn at the shown size.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from multibox.atomic import atomic_path
from multibox.evaluation.voc import average_precision

PALETTE = [tuple(round(255 * c) for c in rgb) for rgb in matplotlib.colormaps["tab10"].colors]  # per class
AGNOSTIC_COLOR = (255, 40, 40)  # class-agnostic boxes (a localizer alone)
GT_COLOR = (40, 220, 40)  # ground truth drawn beside predictions
VIEW_MIN_SIDE = 640  # pixels: the longer side of a picture for a person at least (Ultralytics' imgsz)
DRAW_CONF = 0.25  # the lowest score drawn by default (Ultralytics' conf); files keep what was asked


def plot_detection_rate(curves: dict[str, list[float]], path: str | Path, title: str = "") -> None:
    """One line per named curve: detection rate (y) against number of boxes per image (x, log scale)."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("number of boxes per image")
    ax.set_ylabel("detection rate (%), IoU >= 0.5")
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "Detection rate of class 'object' vs number of boxes")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def plot_pr_curves(curves: dict[str, dict[str, list[float]]], path: str | Path, title: str = "") -> None:
    """One precision (y) against recall (x) line per named curve {"precision": [..], "recall": [..],
    "AP" (optional: else the VOC2007 11-point AP of the curve)}, its AP in the legend."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, curve in curves.items():
        ax.plot(curve["recall"], curve["precision"], label=f"{name} (AP {curve_ap(curve):.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    ax.set_title(title or "Class-agnostic detection, IoU >= 0.5")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def curve_ap(curve: dict) -> float:
    """A PR curve's AP: its "AP" entry, else VOC2007 11-point AP of its points (NaN without points)."""
    if curve.get("AP") is not None:
        return float(curve["AP"])
    if not len(curve["recall"]):
        return float("nan")
    return float(average_precision(np.asarray(curve["precision"]), np.asarray(curve["recall"]), "11point"))


def class_color(class_id: int | None) -> tuple[int, int, int]:
    """The palette colour of a class (None: the class-agnostic colour)."""
    return AGNOSTIC_COLOR if class_id is None else PALETTE[class_id % len(PALETTE)]


def text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light fills, white on dark ones (ITU-R BT.601 luma)."""
    return (0, 0, 0) if 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 140 else (255, 255, 255)


def annotation_sizes(width: int, height: int) -> tuple[int, int]:
    """(line width, font size) in pixels for a width x height image: 0.3 % and 3.5 % of its mean side
    (Ultralytics' annotator), at least 2 and 10."""
    mean_side = (width + height) / 2
    return max(round(mean_side * 0.003), 2), max(round(mean_side * 0.035), 10)


def draw_label(draw: ImageDraw.ImageDraw, box: list[float], text: str, color: tuple[int, int, int],
               font: ImageFont.ImageFont, image_size: tuple[int, int]) -> None:
    """``text`` on a filled box at the top-left corner of ``box`` (above it when there is room),
    moved left or down as needed to stay inside the image (image_size: width, height)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 4
    x = max(0.0, min(box[0], image_size[0] - w))
    y = box[1] - h if box[1] - h >= 0 else max(0.0, min(box[1], image_size[1] - h))
    draw.rectangle([x, y, x + w, y + h], fill=color)
    draw.text((x + 2 - left, y + 2 - top), text, fill=text_color(color), font=font)


def draw_boxes(image: Image.Image, boxes, scores=None, labels: list[str] | None = None,
               class_ids: list[int] | None = None, min_score: float = 0.0, gt_boxes=None) -> Image.Image:
    """A copy of ``image`` with ``boxes`` (Tensor or array [N, 4], xyxy pixels) drawn, each with its
    label and score on a filled box; only those scoring at least ``min_score`` (scores [N]).

    class_ids [N]: each box in its class's palette colour (default: one colour); gt_boxes [M, 4]:
    ground truth, drawn thin in green under the boxes.
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    line, size = annotation_sizes(out.width, out.height)
    font = ImageFont.load_default(size=size)
    for box in [] if gt_boxes is None else np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4).tolist():
        draw.rectangle(box, outline=GT_COLOR, width=max(line // 2, 1))
    values = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    for i, box in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4).tolist()):  # drawing is per box
        if values is not None and values[i] < min_score:
            continue
        color = class_color(None if class_ids is None else int(class_ids[i]))
        draw.rectangle(box, outline=color, width=line)
        text = " ".join(t for t in [labels[i] if labels else "", "" if values is None else score_text(values[i])] if t)
        if text:
            draw_label(draw, box, text, color, font, out.size)
    return out


def score_text(score: float) -> str:
    """A score as drawn: 2 decimals (0.87), never scientific notation."""
    return f"{score:.2f}"


def view_scale(width: int, height: int, min_side: int = VIEW_MIN_SIDE) -> float:
    """The factor that brings a width x height image's longer side up to ``min_side`` (1: never shrunk)."""
    return max(1.0, min_side / max(width, height, 1))


def draw_for_viewing(image: Image.Image, boxes, scores=None, labels: list[str] | None = None,
                     class_ids: list[int] | None = None, min_score: float = DRAW_CONF,
                     min_side: int = VIEW_MIN_SIDE, gt_boxes=None) -> Image.Image:
    """:func:`draw_boxes` (boxes [N, 4] xyxy pixels of ``image``, scores [N], optional ground truth
    gt_boxes [M, 4]) on ``image`` upscaled so its longer side is at least ``min_side`` pixels; only boxes
    scoring at least ``min_score``."""
    factor = view_scale(image.width, image.height, min_side)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if gt_boxes is not None:
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if factor > 1:
        size = (round(image.width * factor), round(image.height * factor))
        image, boxes = image.resize(size, Image.BILINEAR), boxes * factor
        gt_boxes = None if gt_boxes is None else gt_boxes * factor
    return draw_boxes(image, boxes, scores, labels=labels, class_ids=class_ids, min_score=min_score, gt_boxes=gt_boxes)
