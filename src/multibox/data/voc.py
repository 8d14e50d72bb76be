"""PASCAL VOC reader: ``Annotations/<id>.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

* Root: a VOC2007/VOC2012 folder, or a VOCdevkit folder holding exactly one of them.
* Split: the ImageSets/Main file name (``train``, ``val``, ``trainval``, ``test``); ``all`` means every
  XML in Annotations/ (for exports without ImageSets, e.g. labelme's ``labelme2voc``).
* Coordinates: VOC's are 1-based inclusive pixel indices, so ``xmin=1`` is the first pixel column; as in
  Detectron2 they become continuous pixel-edge coordinates by x1 = xmin - 1, y1 = ymin - 1, x2 = xmax,
  y2 = ymax (a box covering the whole image is then exactly [0, 0, W, H]).
* ``difficult`` objects are kept with ignore=True (``1``, ``true``, ``1.0``; ``0``, ``false``, empty are
  not difficult); ``truncated``/``occluded`` are ordinary objects.
* XML namespaces are ignored (``<annotation xmlns="...">`` reads as plain VOC).
* Split files: one id per line (an id may contain spaces when ``Annotations/<id>.xml`` exists); an id
  listed twice is reported and used once; an annotation path that cannot be read (a folder, a symlink
  loop) is reported and its image skipped.
* Class names: ``names`` if given; else VOC's 20 classes if every name found is one of them (so train and
  test splits agree on the label order); else the sorted set of names found in the split.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multibox.data.file_dataset import FileDataset
from multibox.data.index_cache import IndexBuilder, IndexData
from multibox.data.problems import ProblemLog
from multibox.data.validate import VOC_CLASSES, clean_boxes, probe_or_report, reconcile_size
from multibox.errors import UserError

__all__ = ["VOCDataset", "voc_root", "voc_splits"]


@dataclass
class _Parsed:
    """One XML's content before class names are known. M objects."""

    image_id: str
    xml: Path
    filename: str | None
    size: tuple[int, int] | None
    names: list[str] = field(default_factory=list)  # [M]
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # [M] VOC 1-based
    difficult: list[bool] = field(default_factory=list)  # [M]
    object_numbers: list[int] = field(default_factory=list)  # [M], 1-based position in the XML


def voc_root(root: str | Path) -> Path:
    """The folder holding Annotations/ (``root`` itself, or its single VOC20xx child); UserError if none."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"VOC dataset root {root} does not exist or is not a folder")
    if (root / "Annotations").is_dir():
        return root
    children = [c for c in sorted(root.iterdir()) if (c / "Annotations").is_dir()]
    if len(children) == 1:
        return children[0]
    found = ", ".join(c.name for c in children) or "none"
    raise UserError(f"{root}: not a VOC folder (no Annotations/; VOC subfolders found: {found})")


def voc_splits(root: Path) -> list[str]:
    """Split names available under ImageSets/Main (class-specific lists like ``dog_train`` excluded)."""
    main = root / "ImageSets" / "Main"
    if not main.is_dir():
        return ["all"]
    stems = sorted(p.stem for p in main.glob("*.txt") if p.is_file())
    return [s for s in stems if "_" not in s] + ["all"]


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def _size(tree: ET.Element) -> tuple[int, int] | None:
    try:
        return int(float(_text(tree.find("size"), "width"))), int(float(_text(tree.find("size"), "height")))
    except (TypeError, ValueError):
        return None  # absent or empty: the image header gives it


def _object(parsed: _Parsed, obj: ET.Element, number: int, log: ProblemLog) -> None:
    """Append object ``number`` of the XML to ``parsed``, or report why it is dropped."""
    name = _text(obj, "name")
    where = f"object {number}" + (f" '{name}'" if name else "")
    bndbox = obj.find("bndbox")
    try:
        box = tuple(float(_text(bndbox, k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (TypeError, ValueError):
        log.add("malformed-object", str(parsed.xml), where, "missing or non-numeric bndbox", "object dropped")
        return
    if name is None:
        log.add("malformed-object", str(parsed.xml), where, "object without a <name>", "object dropped")
        return
    parsed.names.append(name)
    parsed.boxes.append(box)
    parsed.difficult.append(_difficult(_text(obj, "difficult"), parsed.xml, where, log))
    parsed.object_numbers.append(number)


_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no"}


def _difficult(text: str | None, xml: Path, where: str, log: ProblemLog) -> bool:
    """``<difficult>`` as a flag: 1/true/yes/1.0 are difficult; 0/false/no/0.0 and empty are not;
    anything else is reported and read as not difficult (the object is kept, counted in evaluation)."""
    if text is None or text.lower() in _FALSE | _TRUE:
        return text is not None and text.lower() in _TRUE
    try:
        return float(text) != 0
    except ValueError:
        what = f"<difficult> {text[:20]!r} is not 0 or 1"
        log.add("malformed-object", str(xml), where, what, "read as not difficult")
        return False


def _without_namespaces(root: ET.Element) -> ET.Element:
    """``root`` with every tag's ``{namespace}`` removed: ``<annotation xmlns="...">`` reads as VOC."""
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]
    return root


def _parse_xml(image_id: str, xml: Path, log: ProblemLog) -> _Parsed | None:
    try:
        tree = _without_namespaces(ET.parse(xml).getroot())
    except FileNotFoundError:
        log.add("missing-annotation", str(xml), "", "annotation file not found", "image skipped")
        return None
    except ET.ParseError as error:
        line, column = error.position
        log.add("malformed-xml", str(xml), f"line {line}", f"malformed XML ({error})", "image skipped")
        return None
    except OSError as error:  # a folder named x.xml, a symlink loop, no permission
        what = f"cannot read the annotation file ({error.strerror or error})"
        log.add("unreadable-annotation", str(xml), "", what, "image skipped")
        return None
    parsed = _Parsed(image_id, xml, _text(tree, "filename"), _size(tree))
    for number, obj in enumerate(tree.iter("object"), start=1):
        _object(parsed, obj, number, log)
    return parsed


def _class_names(parsed: list[_Parsed]) -> list[str]:
    found = {name for p in parsed for name in p.names}
    return list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)


class VOCDataset(FileDataset):
    """A PASCAL VOC split. See the module docstring for conventions; options as :class:`FileDataset`."""

    format = "voc"

    def __init__(self, root: str | Path, split: str = "trainval", **options):
        self.root = voc_root(root)
        self._ids = self._split_ids(split)
        super().__init__(split, **options)

    @property
    def source(self) -> Path:
        return self.root

    def _split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Main" / f"{split}.txt"

    def _split_ids(self, split: str) -> list[str]:
        """The split's image ids in file order, each once; repeats are kept for :meth:`_build_index` to report."""
        self._repeated: list[tuple[int, str]] = []  # (line number, id) of ids listed again
        if split == "all":
            return sorted(p.stem for p in (self.root / "Annotations").glob("*.xml"))
        path = self._split_file(split)
        if not path.is_file():
            available = ", ".join(voc_splits(self.root))
            raise UserError(f"VOC split file {path} not found (splits here: {available})")
        lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
        ids: dict[str, int] = {}
        for number, line in enumerate(lines, start=1):
            if line.strip():
                image_id = self._line_id(line.strip())
                if image_id in ids:
                    self._repeated.append((number, image_id))
                ids.setdefault(image_id, number)
        return list(ids)

    def _line_id(self, line: str) -> str:
        """A split file line's id: the whole line when an annotation has that name (ids with spaces), else
        its first field (class lists hold ``id -1``)."""
        if " " in line and not (self.root / "Annotations" / f"{line}.xml").is_file():
            return line.split()[0]
        return line

    def _index_files(self) -> list[Path]:
        xmls = [self.root / "Annotations" / f"{i}.xml" for i in self._ids]
        return [self._split_file(self.split), self.root / "Annotations", self.root / "JPEGImages", *xmls]

    def _image_path(self, parsed: _Parsed) -> Path:
        folder = self.root / "JPEGImages"
        candidates = [folder / parsed.filename] if parsed.filename else []
        candidates.append(folder / f"{parsed.image_id}.jpg")
        if self.probe_images:
            return next((c for c in candidates if c.is_file()), candidates[-1])
        return candidates[0]

    def _labels(self, parsed: _Parsed, class_index: dict[str, int], log: ProblemLog) -> np.ndarray:
        """Label per object (-1, after a report, for names outside the class list)."""
        labels = np.array([class_index.get(n, -1) for n in parsed.names], np.int64)
        for m in np.flatnonzero(labels < 0):
            where = f"object {parsed.object_numbers[m]} '{parsed.names[m]}'"
            log.add(
                "unknown-class", str(parsed.xml), where, f"class '{parsed.names[m]}' is not in names", "object dropped"
            )
        return labels

    def _add_image(self, parsed: _Parsed, class_index: dict[str, int], out: IndexBuilder, log: ProblemLog) -> None:
        path = self._image_path(parsed)
        info = probe_or_report(path, log, self.max_pixels) if self.probe_images else None
        if self.probe_images and info is None:
            return
        size = reconcile_size(str(parsed.xml), parsed.size, info, log)
        if size is None:
            log.add("malformed-xml", str(parsed.xml), "size", "no image size in the XML", "image skipped")
            return
        labels = self._labels(parsed, class_index, log)
        boxes = np.asarray(parsed.boxes, np.float64).reshape(-1, 4) - np.array([1.0, 1.0, 0.0, 0.0])
        where = lambda m: f"object {parsed.object_numbers[m]} '{parsed.names[m]}'"  # noqa: E731
        keep, boxes = clean_boxes(boxes, size[0], size[1], log, str(parsed.xml), where)
        keep &= labels >= 0
        if not keep.any():
            log.note("negative-image (no objects)")
        difficult = np.asarray(parsed.difficult, bool).reshape(-1)
        out.add(parsed.image_id, str(path), size[0], size[1], boxes[keep], labels[keep], difficult[keep])

    def _build_index(self, log: ProblemLog) -> IndexData:
        for number, image_id in self._repeated:
            what = f"image id {image_id!r} listed again"
            log.add("duplicate-image-id", str(self._split_file(self.split)), f"line {number}", what, "counted once")
        xml_dir = self.root / "Annotations"
        parsed = [p for i in self._ids if (p := _parse_xml(i, xml_dir / f"{i}.xml", log)) is not None]
        class_names = self.names if self.names is not None else _class_names(parsed)
        class_index = {name: k for k, name in enumerate(class_names)}
        out = IndexBuilder()
        for p in parsed:
            self._add_image(p, class_index, out, log)
        return out.build(class_names)
