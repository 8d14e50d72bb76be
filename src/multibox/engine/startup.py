"""The start-up summary of a training run: what it trains on, at what input size and why, which network
with how many priors, for how long, as Ultralytics and detectron2 print one before their first step.

Printed on rank 0 in two parts: the data before the task is built (building it may cache features for a
minute, behind its own progress bar), the network and the run's length after.
"""

from __future__ import annotations

import sys

import numpy as np

from multibox.config import Config
from multibox.data import DetectionDataset
from multibox.engine.tasks import SIZE_STEP, TARGET_BOX, UPSAMPLE_LIMIT, Task, relative_box_sides, typical_side


def data_line(dataset: DetectionDataset) -> str:
    """"data: NAME: N images, M objects (C classes: a, b, ...)"."""
    names = dataset.class_names
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    classes = f"{len(names)} class{'es' if len(names) != 1 else ''}: {shown}" if names else "no classes"
    return f"data: {dataset.name}: {len(dataset)} images, {dataset.num_objects()} objects ({classes})"


def geometry_reason(cfg: Config, dataset: DetectionDataset, given: tuple[int | None, int | None]) -> str:
    """Why the input is cfg.model.image_size px: given, or the data's box sizes (engine.tasks.auto_geometry)."""
    m = cfg.model
    if given[0] is not None:
        return "given"
    rel = relative_box_sides(dataset)
    rel = rel[rel > 0]
    if m.head != "conv" or not len(rel):
        return "the default"
    side = typical_side(dataset)
    median = float(np.median(rel)) * side
    why = (f"from the data: median box {median:.0f} px of {side:.0f} px images, scaled to reach ~{TARGET_BOX:.0f} px"
           f" at stride 16 (rounded to {SIZE_STEP})")
    if m.stride == 8 and given[1] is None:
        why += f"; that would enlarge the images over {UPSAMPLE_LIMIT}x, so stride 8 at half the size"
    return why


def model_lines(cfg: Config, task: Task, dataset: DetectionDataset, given: tuple[int | None, int | None]) -> list[str]:
    """The network, its input and the run's length, one line each."""
    m, t = cfg.model, cfg.train
    lines = [f"input: {m.image_size} px ({geometry_reason(cfg, dataset, given)})"]
    k = getattr(task.model, "num_boxes", None)
    head = f"{m.conv_head} conv head, stride {m.stride}" if m.head == "conv" else f"{m.head} head"
    frozen = ", frozen: features cached" if task.net is not None else ""
    if task.net is not None and cfg.train.tune_backbone:
        frozen = ", frozen up to its finest level (cached), tuned after it"
    nms = f", NMS at IoU {m.nms_iou:g}" if m.nms_iou is not None else ""  # set from the boxes' overlaps (engine.nms_rule)
    lines.append(f"model: {m.kind}, {m.backbone} backbone{frozen}, {head}, K = {k} priors{nms}")
    lines.append(f"training: {length(cfg, task)}, batch {t.batch_size}, {t.optimizer} lr {t.lr:g}, seed {t.seed}")
    return lines


def length(cfg: Config, task: Task) -> str:
    """How long the run trains: the limits it will stop at."""
    t = cfg.train
    parts = []
    if t.steps is not None:
        parts.append(f"{t.steps} steps")
    if t.epochs is not None:
        parts.append(f"{t.epochs:g} epochs")
    if t.steps is None and t.epochs is None and task.default_steps is not None:
        parts.append(f"{task.default_steps} steps (from the data: {len(task.samples)} cached maps)")
    if t.time_minutes is not None:
        parts.append(f"at most {t.time_minutes:g} min")
    return ", ".join(parts) or "no stop rule"


def say(lines: list[str], enabled: bool) -> None:
    """The lines on stderr, when this process prints (rank 0)."""
    if enabled:
        for line in lines:
            print(line, file=sys.stderr)
