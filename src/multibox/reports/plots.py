"""Figures: detection-rate curves (the paper's Fig. 1), class-agnostic precision-recall curves (Fig. 5)
and images with boxes drawn."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402


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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pr_curves(curves: dict[str, dict[str, list[float]]], path: str | Path, title: str = "") -> None:
    """One precision (y) against recall (x) line per named curve {"precision": [..], "recall": [..]}."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, curve in curves.items():
        ax.plot(curve["recall"], curve["precision"], label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    ax.set_title(title or "Class-agnostic detection, IoU >= 0.5")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_boxes(image: Image.Image, boxes, scores=None, labels: list[str] | None = None,
               color: tuple[int, int, int] = (255, 40, 40), gt_boxes=None) -> Image.Image:
    """A copy of ``image`` with pixel xyxy ``boxes`` (and optional ground truth, in green) drawn."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    for box in [] if gt_boxes is None else gt_boxes:
        draw.rectangle([float(v) for v in box], outline=(40, 220, 40), width=1)
    for i, box in enumerate(boxes):
        draw.rectangle([float(v) for v in box], outline=color, width=2)
        text = " ".join(t for t in [labels[i] if labels else "", f"{float(scores[i]):.2f}" if scores is not None else ""] if t)
        if text:
            draw.text((float(box[0]) + 2, float(box[1]) + 1), text, fill=color)
    return out
