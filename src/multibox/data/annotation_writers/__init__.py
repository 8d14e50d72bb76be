"""Annotation files from detections (``multibox detect --format ... --save-txt``), for pre-annotation.

Each writer takes one ``detections.json`` entry per image (:mod:`multibox.inference.entries`: boxes
in pixels, scores, optional ``labels``/``label_ids``) through ``add(entry, image_path, width, height)``
and finishes in ``close()``. Every file is written atomically (:mod:`multibox.atomic`). Layouts, under
``out_dir``, are the ones our readers (and the labelling tools) read back:

* ``yolo/``: ``images/NAME`` (a copy of the image), ``labels/STEM.txt`` (``class xc yc w h
  [conf]`` normalized), ``classes.txt``, ``data.yaml`` (train and val: ``images``).
* ``voc/``: ``Annotations/STEM.xml``, ``JPEGImages/NAME``, ``ImageSets/Main/train.txt``.
* ``coco/``: ``annotations/instances_train.json`` (detections as annotations, score in ``attributes``),
  ``images/NAME``, and ``results.json`` (the COCO results list, pycocotools' ``loadRes``).
* ``labelstudio/``: ``tasks.json`` (tasks with ``predictions`` in percent, as Label Studio imports).
"""

from __future__ import annotations

from pathlib import Path

from multibox.data.annotation_writers.coco_writer import COCOResultsWriter, COCOWriter
from multibox.data.annotation_writers.labelstudio_writer import LabelStudioWriter
from multibox.data.annotation_writers.voc_writer import VOCWriter
from multibox.data.annotation_writers.yolo_writer import YOLOWriter
from multibox.errors import UserError

__all__ = ["FORMATS", "make_writers", "parse_formats"]

FORMATS = ("voc", "coco", "coco-results", "labelstudio", "yolo")


def parse_formats(text: str | None) -> list[str]:
    """``"voc,coco"`` -> ["voc", "coco"]; UserError naming an unknown format."""
    names = [n.strip().lower() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UserError(f"format: unknown annotation format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


def make_writers(formats: list[str], save_txt: bool, save_conf: bool, out_dir: Path, class_names: list[str],
                 model_version: str) -> list:
    """One writer per format (``save_txt`` adds yolo); each has ``add(entry, image_path, width, height)``
    and ``close()``."""
    formats = parse_formats(",".join(formats)) + (["yolo"] if save_txt and "yolo" not in formats else [])
    out_dir, names = Path(out_dir), list(class_names) or ["object"]
    builders = {
        "yolo": lambda: YOLOWriter(out_dir / "yolo", names, save_conf),
        "voc": lambda: VOCWriter(out_dir / "voc", names),
        "coco": lambda: COCOWriter(out_dir / "coco", names),
        "coco-results": lambda: COCOResultsWriter(out_dir / "coco", names),
        "labelstudio": lambda: LabelStudioWriter(out_dir / "labelstudio", names, model_version),
    }
    return [builders[f]() for f in formats]
