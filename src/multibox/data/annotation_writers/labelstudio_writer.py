"""Label Studio tasks JSON with ``predictions`` (pre-annotations, as its import documents them)."""

from __future__ import annotations

import json
from pathlib import Path

from multibox.atomic import write_text_atomic
from multibox.data.annotation_writers.common import box_classes

__all__ = ["LabelStudioWriter", "labelstudio_task"]


def _region(box: list[float], score: float, name: str, width: int, height: int, number: int) -> dict:
    x1, y1, x2, y2 = box
    value = {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
             "height": 100 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": [name]}
    return {"id": f"r{number}", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "original_width": int(width), "original_height": int(height), "image_rotation": 0,
            "value": value, "score": float(score)}


def labelstudio_task(entry: dict, image: str, width: int, height: int, class_names: list[str],
                     model_version: str) -> dict:
    """One task: ``data.image`` and one prediction (``from_name`` label, ``to_name`` image: the default
    RectangleLabels config); the prediction's score is its best region's."""
    regions = [_region(box, score, name, width, height, k) for k, (box, score, (_, name))
               in enumerate(zip(entry["boxes"], entry["scores"], box_classes(entry, class_names)))]
    best = max((r["score"] for r in regions), default=0.0)
    return {"data": {"image": image}, "predictions": [{"model_version": model_version, "score": best,
                                                       "result": regions}]}


class LabelStudioWriter:
    """``root/tasks.json`` on close; ``data.image`` is the image path as given to ``detect`` (set Label
    Studio's local storage or rewrite the prefix to serve it)."""

    def __init__(self, root: Path, class_names: list[str], model_version: str):
        self.root, self.class_names, self.model_version = Path(root), class_names, model_version
        self.tasks: list[dict] = []

    def add(self, entry: dict, image_path: Path, width: int, height: int) -> None:
        self.tasks.append(labelstudio_task(entry, str(image_path), width, height, self.class_names,
                                           self.model_version))

    def close(self) -> None:
        write_text_atomic(self.root / "tasks.json", json.dumps(self.tasks, indent=1) + "\n")
