"""Pascal VOC XML per image (LabelImg, CVAT "PASCAL VOC 1.1"), in a folder :mod:`multibox.data.voc` reads."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from multibox.atomic import write_text_atomic
from multibox.data.annotation_writers.common import box_classes, place_image

__all__ = ["VOCWriter", "voc_xml"]


def _sub(parent: ET.Element, tag: str, text: object) -> ET.Element:
    node = ET.SubElement(parent, tag)
    node.text = str(text)
    return node


def voc_xml(entry: dict, filename: str, width: int, height: int, class_names: list[str]) -> str:
    """One image's VOC XML. VOC corners are 1-based inclusive pixels: xmin = round(x1) + 1, xmax = round(x2)
    (the inverse of our reader's x1 = xmin - 1, x2 = xmax), so boxes come back to the pixel."""
    root = ET.Element("annotation")
    _sub(root, "folder", "JPEGImages")
    _sub(root, "filename", filename)
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        _sub(size, tag, value)
    _sub(root, "segmented", 0)
    for (x1, y1, x2, y2), (_, name) in zip(entry["boxes"], box_classes(entry, class_names)):
        obj = ET.SubElement(root, "object")
        for tag, value in (("name", name), ("pose", "Unspecified"), ("truncated", 0), ("difficult", 0)):
            _sub(obj, tag, value)
        box = ET.SubElement(obj, "bndbox")
        corners = (round(x1) + 1, round(y1) + 1, round(x2), round(y2))
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), corners):
            _sub(box, tag, value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


class VOCWriter:
    """``root/Annotations/STEM.xml`` and ``root/JPEGImages/NAME`` per image; ``ImageSets/Main/train.txt`` on close."""

    def __init__(self, root: Path, class_names: list[str]):
        self.root, self.class_names, self.ids = Path(root), class_names, []

    def add(self, entry: dict, image_path: Path, width: int, height: int) -> None:
        image_path = Path(image_path)
        xml = voc_xml(entry, image_path.name, width, height, self.class_names)
        write_text_atomic(self.root / "Annotations" / f"{image_path.stem}.xml", xml)
        place_image(image_path, self.root / "JPEGImages" / image_path.name)
        self.ids.append(image_path.stem)

    def close(self) -> None:
        write_text_atomic(self.root / "ImageSets" / "Main" / "train.txt", "".join(f"{i}\n" for i in self.ids))
