"""Annotation files (VOC, COCO, YOLO, Label Studio) from a ``detections.json`` written by ``multibox detect``.

Runs after detect over its file, so it does not depend on how detect produces its entries; when detect
takes ``writers`` itself, :func:`annotation_writers` builds the same list for it.
"""

from __future__ import annotations

import json
from pathlib import Path

from multibox.data.annotation_writers import make_writers
from multibox.errors import UserError
from multibox.inference.export import file_props, read_metadata
from multibox.inference.loading import is_onnx

__all__ = ["annotation_writers", "write_annotations"]


def _class_names(entries: list[dict], class_names: list[str] | None) -> list[str]:
    """The classifier's names when given; else the names the entries carry; else ``object``."""
    if class_names:
        return list(class_names)
    found = [n for e in entries for n in e.get("labels", [])]
    return sorted(set(found)) or ["object"]


def training_class_name(model_path: str | Path) -> list[str] | None:
    """[the training data's one class name] of a localizer checkpoint, run folder or exported .onnx: the
    localizer is class-agnostic, so a one-class dataset's name (e.g. "Tree") is what its boxes are; None
    for several classes or a file that does not say (the writers then use ``object``)."""
    path = Path(model_path)
    try:
        names = _stored_class_names(path)
    except (UserError, ImportError, OSError, ValueError):  # the model itself was loaded (and judged) by detect
        return None
    return list(names) if names and len(names) == 1 else None


def _stored_class_names(path: Path) -> list[str] | None:
    """The class names a checkpoint or an export's metadata records (None where it records none)."""
    if is_onnx(path):
        return (read_metadata(file_props(path)) or {}).get("class_names")
    from multibox.engine.checkpoint import load_checkpoint

    return load_checkpoint(path).get("class_names")


def annotation_writers(formats: list[str], save_txt: bool, save_conf: bool, out_dir: Path,
                       class_names: list[str] | None, model_version: str) -> list:
    """The writers for ``formats`` (and yolo with ``save_txt``); empty when none was asked."""
    if not formats and not save_txt:
        return []
    return make_writers(formats, save_txt, save_conf, Path(out_dir), list(class_names or ["object"]), model_version)


def write_annotations(detections: Path, formats: list[str], save_txt: bool, save_conf: bool,
                      class_names: list[str] | None = None, model_version: str = "multibox") -> list[Path]:
    """Write the asked annotation files beside ``detections`` (OUT/voc, OUT/coco, OUT/yolo, OUT/labelstudio);
    the folders written. Entries need "path", "width", "height" (detect writes them)."""
    detections = Path(detections)
    entries = json.loads(detections.read_text())
    names = _class_names(entries, class_names)
    writers = annotation_writers(formats, save_txt, save_conf, detections.parent, names, model_version)
    for entry in entries:
        if "path" not in entry:
            raise UserError(f"{detections}: an entry has no 'path'; annotation files need the image files")
        for writer in writers:
            writer.add(entry, Path(entry["path"]), int(entry["width"]), int(entry["height"]))
    for writer in writers:
        writer.close()
    return sorted({getattr(w, "root") for w in writers})
