"""YOLO txt labels (Ultralytics ``--save-txt`` layout) with ``classes.txt`` and a data YAML."""

from __future__ import annotations

from pathlib import Path

from multibox.atomic import write_text_atomic
from multibox.data.annotation_writers.common import box_classes, place_image

__all__ = ["YOLOWriter"]


class YOLOWriter:
    """``root/labels/STEM.txt`` per image (``class xc yc w h [conf]``, normalized to the image, 6 decimals),
    ``root/images/NAME``; ``classes.txt`` and ``data.yaml`` on close. Lines with ``conf`` (``save_conf``)
    are for reading scores, as in Ultralytics, not for training."""

    def __init__(self, root: Path, class_names: list[str], save_conf: bool = False):
        self.root, self.class_names, self.save_conf = Path(root), class_names, save_conf

    def add(self, entry: dict, image_path: Path, width: int, height: int) -> None:
        lines = []
        for (x1, y1, x2, y2), score, (cls, _) in zip(entry["boxes"], entry["scores"], box_classes(entry, self.class_names)):
            values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
            line = f"{cls} " + " ".join(f"{v:.6f}" for v in values)
            lines.append(line + (f" {score:.4g}" if self.save_conf else ""))
        image_path = Path(image_path)
        write_text_atomic(self.root / "labels" / f"{image_path.stem}.txt", "".join(f"{line}\n" for line in lines))
        place_image(image_path, self.root / "images" / image_path.name)

    def close(self) -> None:
        write_text_atomic(self.root / "classes.txt", "".join(f"{n}\n" for n in self.class_names))
        names = "".join(f"  {i}: {n!r}\n" for i, n in enumerate(self.class_names))
        write_text_atomic(self.root / "data.yaml", f"path: .\ntrain: images\nval: images\nnames:\n{names}")
