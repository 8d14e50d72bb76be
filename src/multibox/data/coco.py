"""COCO reader: an instances JSON (``images``, ``annotations``, ``categories``) plus an image folder.

* ``bbox`` is pixel (x, y, w, h) -> xyxy with :func:`multibox.boxes.xywh_to_xyxy`.
* ``iscrowd`` objects are kept with ignore=True.
* Categories are mapped to contiguous labels in order of category id (COCO's ids run 1..90 with gaps);
  ``class_names[k]`` is the k-th category's name. With ``names`` given, categories are matched by name.
  A background category no annotation uses (labelme2coco's ``_background_``) is not a class (a note).
* Malformed entries (an image without ``id``/``file_name``, a category whose id is not an integer or
  text, a ``bbox`` that is not 4 numbers) are reported and skipped; a file whose ``annotations`` is not a
  list, or JSON nested too deeply to parse, is a one-line UserError.
* Image folder: given, or found next to the JSON (the JSON's folder, ``images/``, ``JPEGImages/``
  (labelme2coco), ``../images/``, and
  for ``annotations/instances_<split>.json`` the usual ``../<split>/``): the first holding the listed files.

Memory: a 1M-annotation JSON parsed by ``json.load`` into dicts is ~1 GB of Python objects. The decoder's
``object_hook`` instead packs each annotation into flat arrays the moment it is parsed (and drops its
segmentation), so only the raw text and a few arrays are alive at once; grouping by image is a numpy
argsort, not a dict of lists.
"""

from __future__ import annotations

import json
from array import array
from pathlib import Path

import numpy as np
import torch

from multibox.boxes import xywh_to_xyxy
from multibox.data.file_dataset import FileDataset
from multibox.data.index_cache import IndexData
from multibox.data.problems import ProblemLog
from multibox.data.validate import clean_boxes, probe_or_report, reconcile_size
from multibox.errors import UserError

__all__ = ["COCODataset", "find_image_dir", "image_dir_candidates"]


class _Malformed:
    """Stands in the annotations list for an annotation the hook could not pack."""

    def __init__(self, ann_id, reason: str):
        self.ann_id, self.reason = ann_id, reason


def _is_xywh(bbox) -> bool:
    """Whether ``bbox`` is a list of 4 numbers (bools and numeric strings are not numbers here)."""
    return (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox))


class _AnnotationPacker:
    """json ``object_hook`` packing annotation dicts into arrays (A annotations); others pass through."""

    def __init__(self) -> None:
        self.image_ids: list = []  # [A] raw ids (int or str)
        self.category_ids: list = []  # [A]
        self.ann_ids: list = []  # [A], for messages
        self.bbox = array("d")  # [A * 4] xywh
        self.crowd = array("b")  # [A]

    def __call__(self, obj: dict):
        if "image_id" not in obj or "category_id" not in obj:
            return obj  # an image, a category, a segmentation RLE...
        bbox = obj.get("bbox")
        if not _is_xywh(bbox):  # a string "1234" would otherwise iterate into four digits
            return _Malformed(obj.get("id"), f"bbox {str(bbox)[:60]!r} is not a list [x, y, w, h] of numbers")
        x, y, w, h = (float(v) for v in bbox)
        self.bbox.extend((x, y, w, h))
        self.image_ids.append(obj["image_id"])
        self.category_ids.append(obj["category_id"])
        self.ann_ids.append(obj.get("id"))
        self.crowd.append(1 if obj.get("iscrowd") else 0)
        return None  # the annotation list keeps only a None per packed annotation


_JSON_TYPES = {"dict": "object", "list": "array", "str": "string", "int": "number", "float": "number",
               "bool": "boolean", "NoneType": "null"}  # Python type -> the JSON word for messages


def _load_json(path: Path) -> tuple[dict, _AnnotationPacker]:
    if not path.is_file():
        raise UserError(f"COCO annotation file {path} not found")
    packer = _AnnotationPacker()
    try:
        # Text mode: only the decoded str is alive during parsing, not the file's bytes as well.
        with open(path, encoding="utf-8-sig") as f:
            data = json.loads(f.read(), object_hook=packer)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: line {error.lineno}: malformed JSON ({error.msg})") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be a COCO instances file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"{path}: not a COCO instances file (no 'images' list)")
    annotations = data.get("annotations")
    if annotations is not None and not isinstance(annotations, list):
        kind = type(annotations).__name__
        raise UserError(f"{path}: 'annotations' must be a list of objects, got a JSON {_JSON_TYPES.get(kind, kind)}")
    return data, packer



def image_dir_candidates(json_path: Path) -> list[Path]:
    """Where a COCO JSON's images usually are, most specific first."""
    here = json_path.parent
    candidates = [here, here / "images", here / "JPEGImages", here.parent / "images", here.parent]
    if json_path.stem.startswith("instances_"):
        split = json_path.stem[len("instances_") :]
        candidates[1:1] = [here.parent / split, here.parent / "images" / split]
    return candidates


def find_image_dir(json_path: Path, file_names: list[str]) -> Path | None:
    """The first usual folder next to ``json_path`` holding any of the first few listed images, or None.

    "Any", not "all": a missing image must be reported as such, not make the whole folder unfindable.
    """
    probes = file_names[:10]
    return next((c for c in image_dir_candidates(json_path) if any((c / n).is_file() for n in probes)), None)


#: Category names that mean "no object" (labelme2coco writes ``_background_`` as category 0).
_BACKGROUND_NAMES = {"background", "bg", "_background_", "__background__"}


def _usable_categories(data: dict, path: Path, log: ProblemLog) -> list[tuple]:
    """[(id, name)] of the well-formed categories, sorted by id; malformed or repeated ones reported."""
    categories = data.get("categories") or []
    if not isinstance(categories, list):
        raise UserError(f"{path}: 'categories' must be a list of objects with 'id' and 'name'")
    pairs, seen = [], set()
    for k, c in enumerate(categories):
        cid = c.get("id") if isinstance(c, dict) else None
        name = c.get("name") if isinstance(c, dict) else None
        if not isinstance(cid, (int, str)) or isinstance(cid, bool) or not isinstance(name, (str, int, float)):
            what = f"category {str(c)[:60]} needs an integer or text 'id' and a text 'name'"
            log.add("malformed-category", str(path), f"categories[{k}]", what, "category skipped")
        elif cid in seen:
            log.add("duplicate-category-id", str(path), f"categories[{k}] id {cid!r}", "category id listed twice",
                    "later entry skipped")
        else:
            seen.add(cid)
            pairs.append((cid, str(name)))
    return sorted(pairs, key=lambda p: (isinstance(p[0], str), p[0]))


def _category_map(data: dict, names: list[str] | None, path: Path, log: ProblemLog,
                  used: set) -> tuple[dict, list[str]]:
    """category id -> contiguous label, and the class names. ``used``: the category ids annotations use;
    an unused background category (labelme's ``_background_``) is no class to detect."""
    pairs = _usable_categories(data, path, log)
    if names is None:
        background = [(cid, n) for cid, n in pairs if n.strip().lower() in _BACKGROUND_NAMES and cid not in used]
        for cid, name in background:
            log.note(f"background category {name!r} (no annotations) not counted as a class")
        pairs = [p for p in pairs if p not in background]
        return {cid: k for k, (cid, _) in enumerate(pairs)}, [name for _, name in pairs]
    by_name = {name: k for k, name in enumerate(names)}
    return {cid: by_name[name] for cid, name in pairs if name in by_name}, list(names)


def _lookup(keys: list, table: dict) -> np.ndarray:
    """int64 [len(keys)]: table[key], -1 where absent (unhashable keys count as absent)."""
    get = table.get
    safe = lambda k: get(k, -1) if isinstance(k, (int, str, float)) else -1  # noqa: E731
    return np.fromiter(map(safe, keys), np.int64, count=len(keys))


class COCODataset(FileDataset):
    """A COCO instances file. ``images``: the image folder (default: found, see the module docstring)."""

    format = "coco"

    def __init__(self, annotations: str | Path, images: str | Path | None = None, split: str | None = None, **options):
        self.annotations = Path(annotations)
        self.images = Path(images) if images is not None else None
        if self.images is not None and not self.images.is_dir():
            raise UserError(f"COCO image folder {self.images} not found")
        super().__init__(split or self.annotations.stem, **options)

    @property
    def source(self) -> Path:
        return self.annotations

    def _index_files(self) -> list[Path]:
        # Without an image folder given, the folders it may be found in: moving images there rebuilds.
        return [self.annotations, *([self.images] if self.images else image_dir_candidates(self.annotations))]

    def _options_key(self) -> str:
        return f"{super()._options_key()}|{self.images}"

    def _images_table(self, data: dict, log: ProblemLog) -> list[tuple]:
        """[(id, file_name, width, height)] of the well-formed, first-seen image entries."""
        seen, table = set(), []
        for k, image in enumerate(data["images"]):
            try:
                entry = (image["id"], str(image["file_name"]), image.get("width"), image.get("height"))
                hash(entry[0])
            except (KeyError, TypeError, AttributeError):
                log.add(
                    "malformed-image-entry",
                    str(self.annotations),
                    f"images[{k}]",
                    "needs 'id' and 'file_name'",
                    "entry skipped",
                )
                continue
            if entry[0] in seen:
                log.add(
                    "duplicate-image-id",
                    str(self.annotations),
                    f"images[{k}] id {entry[0]!r}",
                    "image id listed twice",
                    "later entry skipped",
                )
                continue
            seen.add(entry[0])
            table.append(entry)
        return table

    def _image_dir(self, table: list[tuple]) -> Path:
        if self.images is not None:
            return self.images
        found = find_image_dir(self.annotations, [t[1] for t in table])
        if found is None and table:
            raise UserError(
                f"{self.annotations}: cannot find its images (e.g. {table[0][1]}) next to it; "
                "give the image folder (dataset YAML key 'images')"
            )
        return found or self.annotations.parent

    def _image_size(self, entry: tuple, path: Path, log: ProblemLog) -> tuple[int, int] | None:
        """(width, height) of an image entry: the JSON's, checked against the header when probing."""
        try:
            annotated = (int(entry[2]), int(entry[3]))
        except (TypeError, ValueError):
            annotated = None  # absent: only the header can tell
        if not self.probe_images and annotated is not None:
            return annotated
        info = probe_or_report(path, log, self.max_pixels)
        where = f"image id {entry[0]!r}"
        return reconcile_size(str(self.annotations), annotated, info, log, where) if info else None

    def _images(self, data: dict, log: ProblemLog) -> tuple[list, list, np.ndarray, dict]:
        """Usable images: (ids, paths, sizes int64 [N, 2], raw id -> image index)."""
        table = self._images_table(data, log)
        folder = self._image_dir(table)
        ids, paths, sizes = [], [], []
        for entry in table:
            path = folder / entry[1]
            size = self._image_size(entry, path, log)
            if size is not None:
                ids.append(entry[0])
                paths.append(str(path))
                sizes.append(size)
        index_of = {raw: i for i, raw in enumerate(ids)}
        return ids, paths, np.asarray(sizes, np.int64).reshape(-1, 2), index_of

    def _report_malformed(self, data: dict, log: ProblemLog) -> None:
        annotations = data.get("annotations") or []
        for k, ann in enumerate(annotations):
            if ann is None:
                continue
            ann_id = ann.ann_id if isinstance(ann, _Malformed) else (ann.get("id") if isinstance(ann, dict) else None)
            reason = ann.reason if isinstance(ann, _Malformed) else "needs 'image_id', 'category_id' and 'bbox'"
            where = f"annotations[{k}]" + (f" id {ann_id}" if ann_id is not None else "")
            log.add("malformed-annotation", str(self.annotations), where, reason, "object dropped")

    def _resolve(self, packer: _AnnotationPacker, index_of: dict, category_of: dict, log: ProblemLog):
        """Per annotation: image index and label (-1 where unknown, after a report)."""
        images = _lookup(packer.image_ids, index_of)
        labels = _lookup(packer.category_ids, category_of)
        file = str(self.annotations)
        for a in np.flatnonzero(labels < 0):
            what = f"category_id {packer.category_ids[a]!r} is not a known category"
            log.add("unknown-class", file, f"annotation id {packer.ann_ids[a]}", what, "object dropped")
        for a in np.flatnonzero(images < 0):
            what = f"image_id {packer.image_ids[a]!r} is not a usable image"
            log.add("unknown-image", file, f"annotation id {packer.ann_ids[a]}", what, "object dropped")
        return images, labels

    def _boxes(self, packer: _AnnotationPacker, images: np.ndarray, sizes: np.ndarray, log: ProblemLog):
        """keep bool [A] and clipped pixel xyxy [A, 4]; annotations on unknown images (-1) are not checked."""
        xywh = np.frombuffer(packer.bbox, np.float64).reshape(-1, 4)
        xyxy = xywh_to_xyxy(torch.from_numpy(xywh)).numpy()
        known = np.flatnonzero(images >= 0)
        wh = sizes[images[known]].astype(np.float64)  # [A_known, 2] size of each annotation's image
        where = lambda j: f"annotation id {packer.ann_ids[known[j]]}"  # noqa: E731
        keep, boxes = np.zeros(len(images), bool), np.zeros((len(images), 4), np.float32)
        keep[known], boxes[known] = clean_boxes(xyxy[known], wh[:, 0], wh[:, 1], log, str(self.annotations), where)
        return keep, boxes

    def _build_index(self, log: ProblemLog) -> IndexData:
        data, packer = _load_json(self.annotations)
        used = {c for c in packer.category_ids if isinstance(c, (int, str, float))}
        category_of, class_names = _category_map(data, self.names, self.annotations, log, used)
        ids, paths, sizes, index_of = self._images(data, log)
        self._report_malformed(data, log)
        del data  # the images' dicts are no longer needed
        images, labels = self._resolve(packer, index_of, category_of, log)
        keep, boxes = self._boxes(packer, images, sizes, log)
        keep &= (images >= 0) & (labels >= 0)
        crowd = np.frombuffer(packer.crowd, np.int8).astype(bool)
        return _grouped(ids, paths, sizes, images[keep], boxes[keep], labels[keep], crowd[keep], class_names, log)


def _grouped(ids, paths, sizes, images, boxes, labels, crowd, class_names, log: ProblemLog) -> IndexData:
    """IndexData with annotations sorted by image (stable: file order within an image)."""
    order = np.argsort(images, kind="stable")
    counts = np.bincount(images, minlength=len(ids)).astype(np.int64)
    negatives = int((counts == 0).sum())
    if negatives:
        log.note("negative-image (no objects)", negatives)
    return IndexData(
        class_names=class_names,
        image_ids=[str(i) for i in ids],
        paths=paths,
        widths=sizes[:, 0].copy(),
        heights=sizes[:, 1].copy(),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        boxes=boxes[order],
        labels=labels[order],
        ignore=crowd[order],
    )
