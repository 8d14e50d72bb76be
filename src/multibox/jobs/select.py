"""`multibox select`: which unlabelled images to label next (issue 20 item 3).

Each image of ``--images`` is scored by :mod:`multibox.inference.informativeness` (how much the
localizer disagrees with itself between the image and its mirror, and how close its scores sit to the
decision threshold) and the images are ranked, most informative first:

* ``OUT/select.csv`` and ``OUT/select.json``: every image with its rank, both measures and how many of
  its boxes score at least conf (its pre-annotations); images that
  cannot be read are listed as skipped (with why), never dropped silently;
* with ``--format labelstudio``: ``OUT/labelstudio/tasks.json``, the top N images as Label Studio tasks
  with the model's boxes (score >= conf) as pre-annotations, to correct instead of drawing.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from multibox.atomic import write_text_atomic
from multibox.config import SELECT_RANKINGS
from multibox.data.annotation_writers import make_writers, parse_formats
from multibox.data.images import open_image
from multibox.errors import UserError
from multibox.inference.entries import detection_entry
from multibox.inference.informativeness import image_informativeness
from multibox.inference.localizer import Localizer
from multibox.jobs.detect import expand_inputs

__all__ = ["RANKINGS", "select_images", "SELECT_FORMATS"]

RANKINGS = SELECT_RANKINGS  # what --by ranks on
SELECT_FORMATS = ("labelstudio", "voc", "coco", "yolo")  # task files of the top N (the annotation writers')
CSV_COLUMNS = ("rank", "path", "width", "height", "disagreement", "uncertainty", "boxes_at_conf")


def _score_images(localizer: Localizer, files: list[Path], top_k: int, threshold: float,
                  keep: int) -> tuple[list[dict], list[dict]]:
    """(one row per readable image with its measures and boxes, the skipped images with why)."""
    rows, skipped = [], []
    for path in files:
        try:
            image = open_image(path)
        except UserError as error:  # UnusableImage: a reported skip, not a stop
            skipped.append({"path": str(path), "reason": str(error)})
            continue
        result = image_informativeness(localizer, image, top_k, threshold, keep)
        rows.append({"path": str(path), "width": image.width, "height": image.height, **result})
    return rows, skipped


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row["rank"], row["path"], row["width"], row["height"], f"{row['disagreement']:.4f}",
                         f"{row['uncertainty']:.4f}", row["boxes_at_conf"]])
    return buffer.getvalue()


def _write_tasks(rows: list[dict], formats: list[str], out: Path, model: str) -> list[Path]:
    """The top rows as annotation files (Label Studio tasks, ...) with their boxes as pre-annotations."""
    writers = make_writers(formats, False, False, out, ["object"], model)
    for row in rows:
        entry = detection_entry({"boxes": row["kept_boxes"], "scores": row["kept_scores"]}, row["width"],
                                row["height"], path=row["path"])
        for writer in writers:
            writer.add(entry, Path(row["path"]), row["width"], row["height"])
    for writer in writers:
        writer.close()
    return sorted({w.root for w in writers})


def _check(n: int, by: str, formats: list[str]) -> None:
    if by not in RANKINGS:
        raise UserError(f"by: expected one of {', '.join(RANKINGS)}, got {by!r}")
    if n < 1:
        raise UserError(f"n: expected a positive number of images, got {n}")
    wrong = [f for f in formats if f not in SELECT_FORMATS]
    if wrong:
        raise UserError(f"format: {', '.join(wrong)} is not written by select; choose from {', '.join(SELECT_FORMATS)}")


def select_images(model: str | Path, images: list[str], out: str | Path, n: int = 10, *, by: str = "disagreement",
                  top_k: int = 25, threshold: float = 0.5, conf: float = 0.25, max_det: int = 100,
                  formats: str | None = None, device: str = "cpu") -> dict:
    """Rank ``images`` (files or folders) by what labelling them would teach ``model`` (module docstring).

    top_k: boxes per view compared; threshold: the decision threshold of ``uncertainty``; conf, max_det:
    which boxes become pre-annotations. Returns the select.json document ("images" ranked, "top" the
    first n paths, "skipped", "files" written).
    """
    wanted = parse_formats(formats)
    _check(n, by, wanted)
    files = expand_inputs(list(images))
    localizer = Localizer.from_checkpoint(model, device)
    rows, skipped = _score_images(localizer, files, top_k, threshold, max_det)
    rows.sort(key=lambda r: (-r[by], r["path"]))
    for rank, row in enumerate(rows, 1):
        keep = row["scores"] >= conf
        row |= {"rank": rank, "kept_boxes": row["boxes"][keep], "kept_scores": row["scores"][keep],
                "boxes_at_conf": int(keep.sum())}
    out = Path(out)
    written = [out / "select.csv", out / "select.json"]
    written += _write_tasks(rows[:n], wanted, out, str(model)) if wanted else []
    doc = {"model": str(model), "by": by, "top_k": top_k, "threshold": threshold, "conf": conf,
           "top": [r["path"] for r in rows[:n]], "skipped": skipped, "files": [str(p) for p in written],
           "images": [{k: r[k] for k in CSV_COLUMNS} for r in rows]}
    write_text_atomic(out / "select.csv", _csv_text(rows))
    write_text_atomic(out / "select.json", json.dumps(doc, indent=1) + "\n")
    return doc
