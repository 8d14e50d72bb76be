"""`multibox data check` and `multibox data show`: a dataset's report and problems (exit 0 usable,
1 problems found, 2 unreadable), and its ground truth drawn on N images (class names; ignored
objects in grey) for a look."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import ImageDraw

from multibox.data.check import load_all, open_for_check, report
from multibox.atomic import write_text_atomic
from multibox.data.dataset import DetectionDataset
from multibox.data.problems import PROBLEMS_LOG, BadImage, ProblemLog
from multibox.errors import UserError


def check_main(
    data: str,
    split: str = "train",
    crops_per_image: int = 4,
    seed: int = 0,
    load_images: bool = True,
    out: TextIO | None = None,
    verbose: bool = False,
    plots: str | Path | None = None,
    **options,
) -> int:
    """``multibox data check DATA --split S``: print the report; return 0 usable / 1 problems / 2 unreadable.

    Problems: one line per kind (its count and the first), every line with ``verbose``. ``plots``: a
    folder for the dataset picture (labels.png, :mod:`multibox.reports.dataset_plots`) and problems.log.
    """
    out = out or sys.stdout
    write = lambda line: print(line, file=out)  # noqa: E731
    log = ProblemLog(echo=write if verbose else None, max_kept_per_kind=None)
    try:
        dataset = open_for_check(data, split, log, **options)
    except UserError as error:
        write(f"error: {error}")
        return 2
    failed = load_all(dataset, log) if load_images else 0
    negatives = sum(1 for r in dataset.records if len(r.boxes) == 0)
    for line in report(dataset, crops_per_image, seed, negatives):
        write(line)
    written = write_check_files(dataset, log, Path(plots)) if plots is not None else []
    write(log.summary())
    if log and not verbose:
        write(f"  (--verbose lists all {log.total}" + (f"; so does {written[-1]})" if len(written) > 1 else ")"))
    if written:
        write("wrote " + ", ".join(map(str, written)))
    if len(dataset) - failed <= 0:
        write("result: unreadable (no usable image)")
        return 2
    write("result: " + ("problems found (the rest is usable)" if log else "usable"))
    return 1 if log else 0


def write_check_files(dataset: DetectionDataset, log: ProblemLog, folder: Path) -> list[Path]:
    """``data check --plots DIR``: DIR/labels.png and, when there are problems, DIR/problems.log (every line)."""
    from multibox.reports.dataset_plots import DATASET_PNG, write_dataset_plots

    folder.mkdir(parents=True, exist_ok=True)
    write_dataset_plots(dataset, folder / DATASET_PNG)
    if not log:
        return [folder / DATASET_PNG]
    write_text_atomic(folder / PROBLEMS_LOG, "\n".join(map(str, log.problems)) + "\n")
    return [folder / DATASET_PNG, folder / PROBLEMS_LOG]


def _colour(label: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(label)  # a fixed colour per class
    return tuple(int(v) for v in rng.integers(64, 256, 3))


def _draw(image, record, class_names: list[str]):
    draw = ImageDraw.Draw(image)
    sx, sy = image.width / record.width, image.height / record.height
    for box, label, ignored in zip(record.boxes, record.labels, record.ignore):
        xy = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
        colour = (128, 128, 128) if ignored else _colour(int(label))
        draw.rectangle(xy, outline=colour, width=1 if ignored else 2)
        text = class_names[label] + (" (ignored)" if ignored else "")
        draw.text((xy[0] + 2, xy[1] + 1), text, fill=colour)
    return image


def show_main(data: str, split: str, out: str | Path, n: int = 16, **options) -> None:
    """``multibox data show DATA --out DIR -n N``: JPEGs of N images (spread over the split) with their boxes."""
    log = ProblemLog()
    dataset = open_for_check(data, split, log, **options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    picks = (
        np.unique(np.linspace(0, len(dataset) - 1, num=min(n, len(dataset))).round().astype(int))
        if len(dataset)
        else []
    )
    written = 0
    for i in picks:
        record = dataset.records[i]
        try:
            image = dataset.load_image(int(i))
        except BadImage as error:
            log.report(error.problem)
            continue
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", record.image_id)
        _draw(image, record, dataset.class_names).save(out / f"{int(i):05d}_{name}.jpg", quality=90)
        written += 1
    print(f"wrote {written} image(s) with ground-truth boxes to {out}")
