"""COCO outputs: a dataset JSON with the detections as annotations (CVAT "COCO 1.0") and the results list."""

from __future__ import annotations

import json
from pathlib import Path

from multibox.atomic import write_text_atomic
from multibox.data.annotation_writers.common import box_classes, place_image

__all__ = ["COCOWriter", "COCOResultsWriter"]


def _xywh(box: list[float]) -> list[float]:
    x1, y1, x2, y2 = box
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


class _COCOBase:
    """Collects images and per-box records; category ids are 1..C in class-name order."""

    def __init__(self, root: Path, class_names: list[str]):
        self.root, self.class_names = Path(root), class_names
        self.images: list[dict] = []
        self.records: list[dict] = []

    def add(self, entry: dict, image_path: Path, width: int, height: int) -> None:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": Path(image_path).name, "width": int(width),
                            "height": int(height)})
        for box, score, (cls, _) in zip(entry["boxes"], entry["scores"], box_classes(entry, self.class_names)):
            self.records.append({"image_id": image_id, "category_id": cls + 1, "bbox": _xywh(box),
                                 "score": float(score)})

    def categories(self) -> list[dict]:
        return [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(self.class_names)]


class COCOWriter(_COCOBase):
    """``root/annotations/instances_train.json`` (score in ``attributes``, CVAT's place for extras) and
    ``root/images/NAME``."""

    def add(self, entry: dict, image_path: Path, width: int, height: int) -> None:
        super().add(entry, image_path, width, height)
        place_image(Path(image_path), self.root / "images" / Path(image_path).name)

    def close(self) -> None:
        annotations = [{"id": k + 1, "image_id": r["image_id"], "category_id": r["category_id"], "bbox": r["bbox"],
                        "area": round(r["bbox"][2] * r["bbox"][3], 2), "iscrowd": 0, "segmentation": [],
                        "attributes": {"score": r["score"]}} for k, r in enumerate(self.records)]
        data = {"info": {"description": "multibox detect"}, "images": self.images, "annotations": annotations,
                "categories": self.categories()}
        write_text_atomic(self.root / "annotations" / "instances_train.json", json.dumps(data, indent=1) + "\n")


class COCOResultsWriter(_COCOBase):
    """``root/results.json``: ``[{image_id, category_id, bbox (xywh pixels), score}]`` (pycocotools loadRes),
    with ``root/results_images.json`` naming the image ids (the results list has no file names)."""

    def close(self) -> None:
        write_text_atomic(self.root / "results.json", json.dumps(self.records) + "\n")
        write_text_atomic(self.root / "results_images.json",
                          json.dumps({"images": self.images, "categories": self.categories()}) + "\n")
