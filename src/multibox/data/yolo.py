"""YOLO (Ultralytics layout) reader: a data YAML plus ``labels/*.txt`` files of normalized boxes.

Data YAML keys: ``path`` (dataset root; relative to the YAML's folder, default that folder), ``train``,
``val``, ``test`` (each a folder of images searched recursively, a ``.txt`` list of image paths, or a
list of those), and ``names`` (a list, or a dict ``{0: name, 1: name, ...}``).

* Image <-> label file: the last ``/images/`` in the image path becomes ``/labels/`` and the extension
  ``.txt`` (Ultralytics' rule): ``images/train/x.jpg`` <-> ``labels/train/x.txt``.
* In a ``.txt`` list, ``./x`` is relative to the list's folder (as in Ultralytics) and other relative
  paths to the dataset root.
* Each label line is ``class cx cy w h`` normalized to the oriented image; a line with more than four
  coordinates is a segment polygon ``class x1 y1 x2 y2 ...`` and becomes its bounding box.
* A missing or empty label file makes the image a negative (counted as a note, not a problem); a missing
  labels folder is reported (one line per folder), and a split where no image has a label file is an
  error. Label files and ``.txt`` lists may start with a UTF-8 BOM.
* Two images mapping to one label file (``a.jpg``, ``a.png``): reported; the first (sorted) keeps it.
* YOLO labels carry no image size, so every image header is read while indexing (probe_images is on).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from multibox.boxes import cxcywh_to_xyxy, denormalize
from multibox.data.file_dataset import FileDataset
from multibox.data.index_cache import IndexBuilder, IndexData
from multibox.data.problems import ProblemLog
from multibox.data.validate import clean_boxes, probe_or_report
from multibox.errors import UserError
from multibox.yaml_files import read_yaml

__all__ = ["YOLODataset", "IMAGE_SUFFIXES", "label_path", "load_yaml", "yolo_names"]

IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"}


def load_yaml(path: Path) -> dict:
    """A YAML mapping; UserError naming the file (and line) when missing, malformed or an alias bomb."""
    if not path.is_file():
        raise UserError(f"dataset YAML {path} not found")
    data = read_yaml(path)  # alias bombs, non-UTF-8 bytes: one-line errors (multibox.yaml_files)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys (path, train, val, names...)")
    return data


def yolo_names(names, source: str) -> list[str]:
    """``names`` as a list; a dict must have the keys 0..K-1."""
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise UserError(f"{source}: 'names' keys must be class ids 0..K-1") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise UserError(f"{source}: 'names' keys must be exactly 0..{len(by_id) - 1}, got {sorted(by_id)}")
        return [by_id[k] for k in range(len(by_id))]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise UserError(f"{source}: 'names' must be a list or a dict of class names")


def label_path(image: Path) -> Path:
    """Ultralytics' image -> label file rule (last ``images`` folder replaced by ``labels``)."""
    parts = list(image.parts)
    if "images" in parts[:-1]:
        k = len(parts) - 2 - parts[:-1][::-1].index("images")
        parts[k] = "labels"
    return Path(*parts).with_suffix(".txt")


def _list_file_images(path: Path, root: Path) -> list[Path]:
    lines = [s.strip() for s in path.read_text(encoding="utf-8-sig", errors="replace").splitlines()]
    resolve = lambda s: path.parent / s[2:] if s.startswith("./") else root / s  # noqa: E731
    return [resolve(s) for s in lines if s]


def _split_images(entry, root: Path, source: str) -> tuple[list[Path], list[Path]]:
    """(image paths, the folders/list files they came from) of one split entry."""
    entries = entry if isinstance(entry, list) else [entry]
    images, origins = [], []
    for item in entries:
        path = root / str(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            images += found
            origins += sorted({path, *(p.parent for p in found)})
        elif path.is_file():
            images += _list_file_images(path, root)
            origins.append(path)
        else:
            raise UserError(f"{source}: split path {path} not found")
    return images, origins


def _parse_line(tokens: list[str]) -> tuple[float, list[float]] | str:
    """(class, [cx, cy, w, h]) of one label line, or why it is malformed."""
    if len(tokens) < 5 or (len(tokens) > 5 and len(tokens) % 2 == 0):
        return f"expected 'class cx cy w h' or a polygon, got {len(tokens)} fields"
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return "non-numeric field"
    if len(values) == 5:
        return values[0], values[1:]
    xs, ys = values[1::2], values[2::2]  # polygon: its bounding box, as cx cy w h
    x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
    return values[0], [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def _class_id(value: float, num_classes: int) -> int | None:
    """The integer class id, or None when it is not an integer in 0..num_classes-1."""
    if not math.isfinite(value) or value != int(value) or not 0 <= value < num_classes:
        return None
    return int(value)


def _report_missing_folders(labels: list[Path], log: ProblemLog) -> None:
    """One line per label folder that does not exist (its images become negatives)."""
    folders: dict[Path, int] = {}
    for label in labels:
        folders[label.parent] = folders.get(label.parent, 0) + 1
    for folder, count in folders.items():
        if not folder.is_dir():
            what = f"labels folder not found ({count} image(s) of the split would read their labels here)"
            log.add("missing-labels-folder", str(folder), "", what, "images used as negatives")


def _one_image_per_label(images: list[Path], labels: list[Path], log: ProblemLog) -> list[Path]:
    """Images whose label file no earlier image claims (a.jpg and a.png both map to a.txt)."""
    owner: dict[Path, Path] = {}
    kept = []
    for image, label in zip(images, labels):
        if label in owner and label.is_file():  # two negatives without a label file share nothing
            what = f"label file shared by {owner[label].name} and {image.name}"
            log.add("shared-label-file", str(label), "", what, f"used for {owner[label].name} only; {image.name} skipped")
            continue
        owner.setdefault(label, image)
        kept.append(image)
    return kept


class YOLODataset(FileDataset):
    """A split of an Ultralytics-layout dataset.

    config: the data YAML's mapping (``path``, split keys, ``names``); base_dir: what a relative ``path``
    is relative to (the YAML's folder). Use :meth:`from_yaml` for a YAML file.
    """

    format = "yolo"

    def __init__(
        self,
        config: dict,
        split: str = "train",
        base_dir: str | Path = ".",
        source: str | Path | None = None,
        **options,
    ):
        self._source = Path(source) if source is not None else Path(base_dir)
        self.root = (Path(base_dir) / str(config.get("path") or ".")).resolve()
        if not self.root.is_dir():
            raise UserError(f"{self._source}: dataset root {self.root} not found")
        if not config.get(split):
            known = ", ".join(k for k in ("train", "val", "test") if config.get(k)) or "none"
            raise UserError(f"{self._source}: no split '{split}' (splits: {known})")
        if options.get("names") is None:
            if "names" not in config:
                raise UserError(f"{self._source}: no 'names' (the class names)")
            options["names"] = yolo_names(config["names"], str(self._source))
        self._images, self._origins = _split_images(config[split], self.root, str(self._source))
        options["probe_images"] = True  # labels are normalized: the pixel size must come from the image
        super().__init__(split, **options)

    @classmethod
    def from_yaml(cls, path: str | Path, split: str = "train", **options) -> YOLODataset:
        path = Path(path)
        return cls(load_yaml(path), split, base_dir=path.parent, source=path, **options)

    @property
    def source(self) -> Path:
        return self._source

    def _index_files(self) -> list[Path]:
        return [self._source, *self._origins, *(label_path(p) for p in self._images)]

    def _read_labels(self, labels: Path, log: ProblemLog) -> list[tuple[int, int, list[float]]] | None:
        """[(line number, class, cx cy w h)] of the usable lines; [] for no file; None if unreadable."""
        try:
            text = labels.read_text(encoding="utf-8-sig")  # Windows editors start files with a BOM
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            log.add("unreadable-label", str(labels), "", f"cannot read label file ({error})", "image skipped")
            return None
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                row = self._row(line.split(), labels, number, log)
                rows += [row] if row else []
        return rows

    def _row(self, tokens: list[str], labels: Path, number: int, log: ProblemLog):
        parsed = _parse_line(tokens)
        if isinstance(parsed, str):
            log.add("malformed-label-line", str(labels), f"line {number}", parsed, "line dropped")
            return None
        cls = _class_id(parsed[0], len(self.names))
        if cls is None:
            what = f"class id {tokens[0]} is not in 0..{len(self.names) - 1}"
            log.add("unknown-class", str(labels), f"line {number}", what, "object dropped")
            return None
        return number, cls, parsed[1]

    def _add_image(self, image: Path, out: IndexBuilder, log: ProblemLog) -> None:
        labels = label_path(image)
        rows = self._read_labels(labels, log)
        if rows is None:
            return
        info = probe_or_report(image, log, self.max_pixels)
        if info is None:
            return
        cxcywh = torch.tensor([r[2] for r in rows], dtype=torch.float64).reshape(-1, 4)
        pixels = denormalize(cxcywh_to_xyxy(cxcywh), info.width, info.height).numpy()
        where = lambda m: f"line {rows[m][0]}"  # noqa: E731
        keep, boxes = clean_boxes(pixels, info.width, info.height, log, str(labels), where)
        if not keep.any():
            log.note("negative-image (no objects)")
        classes = np.array([r[1] for r in rows], np.int64)
        out.add(
            self._image_id(image),
            str(image),
            info.width,
            info.height,
            boxes[keep],
            classes[keep],
            np.zeros(int(keep.sum()), bool),
        )

    def _image_id(self, image: Path) -> str:
        """The image's path under the root without suffix: unique even where file stems repeat."""
        try:
            return image.relative_to(self.root).with_suffix("").as_posix()
        except ValueError:
            return image.with_suffix("").as_posix()

    def _build_index(self, log: ProblemLog) -> IndexData:
        images = self._labelled_images(log)
        out = IndexBuilder()
        for image in images:
            self._add_image(image, out, log)
        return out.build(self.names)

    def _labelled_images(self, log: ProblemLog) -> list[Path]:
        """The split's images, one per label file; missing label folders reported (an error if no image
        of the split has a label file: a wrong layout, not a split of negatives)."""
        labels = [label_path(p) for p in self._images]
        # Images that are all missing are reported one by one later; that is not a labels problem.
        if not any(p.is_file() for p in labels) and any(p.is_file() for p in self._images):
            raise UserError(f"{self._source}: no label file for any of the {len(labels)} image(s) of split "
                            f"'{self.split}' (looked for e.g. {labels[0]}; labels/ mirrors images/)")
        _report_missing_folders(labels, log)
        return _one_image_per_label(self._images, labels, log)
