"""Detection files: writing our ``detections.json`` and reading boxes from any source for evaluation.

Two formats are read, told apart by their first entry:

* ours (``multibox detect``, ``evaluate``, ``baseline``): one entry per image, ``{"path", "image_id"
  (optional), "width", "height", "boxes": [[x1, y1, x2, y2], ...] (pixels), "scores": [...],
  "labels": [...] (optional: class indices or class names)}``. Boxes of an entry whose width/height
  differ from the record's (e.g. detected on a resized copy) are scaled to the record's frame.
* COCO results: one entry per box, ``{"image_id", "category_id", "bbox": [x, y, w, h] (pixels),
  "score"}``. A file whose entries all share one ``category_id`` is class-agnostic (proposals); with
  several, ``category_id`` becomes a label: through the annotation file's categories (matched by name)
  on a COCO dataset, as a 0-based class index on any other dataset.

An entry is matched to the split's records by, in order: its image id, its path, its file name and
its file-name stem (for COCO results, ``image_id`` is tried in each role). A key that several records
share matches none of them, and the next key is tried (an image id two records share, then the path).
Entries matching no record are counted, named on stderr and left out; records with no entry are
evaluated with no boxes (every object missed), and counted too.

Bad content is a one-line UserError naming the file and the entry: a number that is NaN or infinite
(Python's json reads both), a ``width``/``height`` that is not a positive number, a box that is not 4
numbers, JSON nested too deeply to parse. detections.json is written atomically (never a partial file).

Boxes are written as the shortest decimals that read back to the same float32 values, so a
detections.json evaluated again gives exactly the numbers of the run that wrote it.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from multibox.atomic import write_text_atomic
from multibox.data import DetectionDataset
from multibox.errors import UserError


def float32_values(values: Tensor | np.ndarray) -> list:
    """Nested lists of the shortest decimals that read back to the same float32 values."""
    array = np.asarray(values, dtype=np.float32)
    flat = [float(str(v)) for v in array.ravel()]  # str of a numpy float32: shortest round-trip digits
    return np.asarray(flat, dtype=np.float64).reshape(array.shape).tolist()


def detection_entries(dataset: DetectionDataset, detections: list[dict[str, Tensor] | None]) -> list[dict]:
    """Our detections.json entries for the records that have detections (None: image left out)."""
    entries = []
    for record, det in zip(dataset.records, detections, strict=True):
        if det is None:
            continue
        entry = {"path": record.path, "image_id": record.image_id, "width": record.width, "height": record.height,
                 "boxes": float32_values(det["boxes"]), "scores": float32_values(det["scores"])}
        if det.get("labels") is not None:
            entry["labels"] = [int(v) for v in det["labels"]]
        entries.append(entry)
    return entries


def write_detections(path: str | Path, dataset: DetectionDataset, detections: list[dict[str, Tensor] | None]) -> Path:
    """Write detections.json (the format of ``multibox detect``, plus each record's image id)."""
    path = Path(path)
    write_text_atomic(path, json.dumps(detection_entries(dataset, detections)))  # never a partial file
    return path


class RecordIndex:
    """Finds the record an entry names: image id, then path, file name, file-name stem."""

    def __init__(self, dataset: DetectionDataset) -> None:
        records = dataset.records
        self.tables = [self._unique((r.image_id, i) for i, r in enumerate(records))]
        with_path = [(i, Path(r.path)) for i, r in enumerate(records) if r.path]
        for key in (lambda p: str(p), lambda p: p.name, lambda p: p.stem):
            self.tables.append(self._unique((key(p), i) for i, p in with_path))

    @staticmethod
    def _unique(pairs) -> dict[str, int]:
        """key -> record index; a key of several records maps to -1 (ambiguous: matches nothing)."""
        table: dict[str, int] = {}
        for key, index in pairs:
            table[key] = index if table.get(key, index) == index else -1
        return table

    def find(self, *keys) -> int:
        """The record index of the first key that names exactly one record, else -1. A key several
        records share (an image id of two records) names none of them: the next key is tried."""
        for key in keys:
            if key is None:
                continue
            for table in self.tables:
                index = table.get(str(key), -1)
                if index >= 0:
                    return index
        return -1


@dataclass
class LoadedDetections:
    """Per record (in dataset order): {"boxes" Tensor[N, 4], "scores" Tensor[N] descending, "labels"
    Tensor[N] when the file has labels}; how many file entries matched no record, a few of their
    names, and how many records received no entry."""

    detections: list[dict[str, Tensor]]
    unmatched: int
    unmatched_examples: list[str]
    images_without_detections: int


def load_entries(path: str | Path) -> list[dict]:
    """The JSON list of a detections file; anything else is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be a detections file") from None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: expected a non-empty JSON list of objects "
                        "(COCO results or multibox detections.json)")
    bad = next((k for k, e in enumerate(entries) if not isinstance(e, dict)), None)
    if bad is not None:
        raise UserError(f"{path}: entry {bad}: {str(entries[bad])[:60]} is not an object")
    return entries


def entry_format(entries: list[dict], path: str | Path) -> str:
    """"coco" (per-box entries with bbox) or "ours" (per-image entries with boxes)."""
    first = entries[0]
    if "bbox" in first and "image_id" in first:
        return "coco"
    if "boxes" in first and "scores" in first:
        return "ours"
    raise UserError(f"{path}: entry 0 has neither COCO results keys (image_id, bbox, score) "
                    "nor detections.json keys (path, boxes, scores)")


def read_detections(path: str | Path, dataset: DetectionDataset) -> LoadedDetections:
    """Read a detections file of either format and match its entries to ``dataset``'s records."""
    entries = load_entries(path)
    index = RecordIndex(dataset)
    if entry_format(entries, path) == "coco":
        rows = coco_rows(entries, dataset, index, path)
    else:
        rows = our_rows(entries, dataset, index, path)
    return gather(rows, len(dataset), path)


@dataclass
class Rows:
    """Flat boxes from a file: ``record`` int64 [B] (-1: unmatched), ``boxes`` float32 [B, 4] pixel xyxy,
    ``scores`` float32 [B], ``labels`` int64 [B] or None; the file's entry count and the names of
    the entries that matched no record."""

    record: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None
    num_entries: int
    unmatched: list[str]


def gather(rows: Rows, num_records: int, path: str | Path) -> LoadedDetections:
    """Per-record detection dicts, ranked by descending score (stable: file order on ties)."""
    if len(rows.unmatched) == rows.num_entries:
        raise UserError(f"{path}: none of its entries names an image of the split "
                        f"(e.g. {rows.unmatched[0]!r}); entries are matched by image id, path or file name")
    order = np.lexsort((-rows.scores.astype(np.float64), rows.record))
    order = order[rows.record[order] >= 0]
    starts = np.searchsorted(rows.record[order], np.arange(num_records + 1))
    detections = []
    for i in range(num_records):
        take = order[starts[i] : starts[i + 1]]
        det = {"boxes": torch.from_numpy(rows.boxes[take]), "scores": torch.from_numpy(rows.scores[take])}
        if rows.labels is not None:
            det["labels"] = torch.from_numpy(rows.labels[take])
        detections.append(det)
    empty = int(sum(len(d["scores"]) == 0 for d in detections))
    return LoadedDetections(detections, len(rows.unmatched), rows.unmatched[:3], empty)


def _number_list(value, length: int | None, what: str, path, k: int) -> list[float]:
    """A list of finite numbers (of ``length`` when given), else a UserError naming the entry.
    (Python's json reads NaN and Infinity; a NaN score would rank anywhere.)"""
    ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or (length is not None and len(value) != length):
        shape = f"{length} numbers" if length is not None else "a list of numbers"
        raise UserError(f"{path}: entry {k}: {what} {str(value)[:60]} is not {shape}")
    if not all(_finite(v) for v in value):
        raise UserError(f"{path}: entry {k}: {what} {str(value)[:60]} holds NaN or infinity")
    return value


def _finite(value: float) -> bool:
    """Whether a JSON number is finite as a float (an integer of 400 digits is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def coco_rows(entries: list[dict], dataset: DetectionDataset, index: RecordIndex, path) -> Rows:
    """Per-box COCO results entries -> Rows (bbox xywh -> xyxy in float64, then float32)."""
    record = np.array([index.find(e.get("image_id")) for e in entries], dtype=np.int64)
    xywh = np.array([_number_list(e.get("bbox"), 4, "bbox", path, k) for k, e in enumerate(entries)], np.float64)
    scores = np.array([_number_list([e.get("score")], 1, "score", path, k)[0] for k, e in enumerate(entries)])
    with np.errstate(over="ignore"):  # 1e308 + 1e308, or 1e300 in float32: refused just below
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
        scores = scores.astype(np.float32)
    overflow = np.flatnonzero(~(np.isfinite(boxes).all(axis=1) & np.isfinite(scores)))
    if len(overflow):
        k = int(overflow[0])
        raise UserError(f"{path}: entry {k}: bbox or score does not fit in 32-bit floats")
    labels = coco_labels([e.get("category_id") for e in entries], dataset, path)
    unmatched = [str(entries[k].get("image_id")) for k in np.flatnonzero(record < 0)]
    return Rows(record, boxes, scores, labels, len(entries), unmatched)


def coco_labels(category_ids: list, dataset: DetectionDataset, path) -> np.ndarray | None:
    """Labels [B] of COCO results' category ids; None when one id is shared by all (class-agnostic)."""
    distinct = set(map(str, category_ids))
    if len(distinct) <= 1:
        return None
    if getattr(dataset, "format", None) == "coco":
        label_of = coco_category_map(dataset)
    else:  # other datasets have no category ids: read them as 0-based class indices
        label_of = {str(k): k for k in range(len(dataset.class_names))}
    labels = np.array([label_of.get(str(c), -1) for c in category_ids], dtype=np.int64)
    _note_unknown_labels(labels, [str(c) for c in category_ids], "category_id", path)
    return labels


def coco_category_map(dataset: DetectionDataset) -> dict[str, int]:
    """category id (as text) -> label of a COCO dataset, matching its categories' names to class_names."""
    try:
        categories = json.loads(Path(dataset.annotations).read_text()).get("categories") or []
        by_name = {name: k for k, name in enumerate(dataset.class_names)}
        return {str(c["id"]): by_name[c["name"]] for c in categories if c.get("name") in by_name}
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise UserError(f"{dataset.name}: cannot read its categories to map category_id ({exc})") from None


def _note_unknown_labels(labels: np.ndarray, raw: list[str], what: str, path) -> None:
    """Say on stderr how many boxes carry a label the dataset lacks (they count as wrong labels)."""
    unknown = np.flatnonzero(labels < 0)
    if len(unknown):
        print(f"{path}: {len(unknown)} box(es) have a {what} the dataset does not know "
              f"(e.g. {raw[unknown[0]]!r}); they count for no class", file=sys.stderr)


def our_rows(entries: list[dict], dataset: DetectionDataset, index: RecordIndex, path) -> Rows:
    """Per-image detections.json entries -> Rows (boxes scaled to the record's size if needed)."""
    parts = [_our_entry(e, k, dataset, index, path) for k, e in enumerate(entries)]
    record = np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts])
    boxes = np.concatenate([p[1] for p in parts]).reshape(-1, 4)
    scores = np.concatenate([p[2] for p in parts])
    labelled = all(p[3] is not None for p in parts)
    labels = np.concatenate([p[3] for p in parts]) if labelled else None
    unmatched = [_entry_name(e) for e, p in zip(entries, parts) if p[0] < 0]
    return Rows(record, boxes, scores, labels, len(entries), unmatched)


def _entry_name(entry: dict) -> str:
    return str(entry.get("path") or entry.get("image_id"))


def _our_entry(entry: dict, k: int, dataset: DetectionDataset, index: RecordIndex, path):
    """(record index or -1, boxes float32 [N, 4], scores float32 [N], labels int64 [N] or None)."""
    name = entry.get("path")
    if name is not None and not isinstance(name, str):
        raise UserError(f"{path}: entry {k}: path {str(name)[:60]} is not text")
    i = index.find(entry.get("image_id"), name, Path(name).name if name else None)
    boxes, scores = _entry_boxes(entry, path, k)
    size = _entry_size(entry, path, k)
    if i >= 0:
        boxes = _rescale(boxes, size, dataset.records[i])
    labels = _our_labels(entry.get("labels"), len(boxes), dataset, path, k)
    return i, boxes, scores, labels


def _entry_boxes(entry: dict, path, k: int) -> tuple[np.ndarray, np.ndarray]:
    """An entry's boxes float32 [N, 4] and scores float32 [N], finite, else a UserError naming the entry."""
    raw_boxes = entry.get("boxes") or []
    if not isinstance(raw_boxes, list):
        raise UserError(f"{path}: entry {k}: boxes {str(raw_boxes)[:60]} is not a list of [x1, y1, x2, y2]")
    with np.errstate(over="ignore"):  # 1e300 becomes inf in float32: refused just below
        boxes = np.array([_number_list(b, 4, "box", path, k) for b in raw_boxes], np.float32).reshape(-1, 4)
        scores = np.array(_number_list(entry.get("scores"), len(boxes), "scores", path, k), np.float32)
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise UserError(f"{path}: entry {k}: a box or score does not fit in 32-bit floats")
    return boxes, scores


def _entry_size(entry: dict, path, k: int) -> tuple[float, float] | None:
    """The entry's (width, height) when it gives both as positive numbers; None when it gives neither."""
    w, h = entry.get("width"), entry.get("height")
    if w is None and h is None:
        return None
    for key, v in (("width", w), ("height", h)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise UserError(f"{path}: entry {k}: {key} {json.dumps(v)[:30]} is not a positive number")
    return w, h


def _rescale(boxes: np.ndarray, size: tuple[float, float] | None, record) -> np.ndarray:
    """Boxes of an image of ``size`` (width, height; None: the record's own), in the record's pixel frame."""
    if size is None or tuple(size) == (record.width, record.height):
        return boxes
    w, h = size
    scale = np.array([record.width / w, record.height / h] * 2, dtype=np.float64)
    return (boxes * scale).astype(np.float32)


def _our_labels(raw, n: int, dataset: DetectionDataset, path, k: int) -> np.ndarray | None:
    """An entry's labels (class indices or names) as int64 [n]; None when it has none."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != n:
        raise UserError(f"{path}: entry {k}: 'labels' must list one class per box")
    if not all(isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)) for v in raw):
        raise UserError(f"{path}: entry {k}: 'labels' must be class indices or class names")
    by_name, count = {name: i for i, name in enumerate(dataset.class_names)}, len(dataset.class_names)
    labels = np.array([by_name.get(v, -1) if isinstance(v, str) else (v if 0 <= v < count else -1) for v in raw],
                      dtype=np.int64)
    _note_unknown_labels(labels, list(map(str, raw)), "label", path)
    return labels
