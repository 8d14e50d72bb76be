"""The parsed index of a dataset split, stored flat and cached on disk so a split is parsed once.

:class:`IndexData` keeps all N images' boxes in single arrays (A annotations in total) with per-image
offsets: a few numpy arrays load in well under a second even for a million boxes, where a million small
per-image arrays would not. Records are numpy *views* into those arrays.

The cache file is an ``.npz`` of those arrays plus one JSON document (class names, ids, paths, problems),
loaded with ``np.load(allow_pickle=False)``: nothing in it can run code, so a shared cache folder that
others can write is safe to read (no pickle). A file that does not parse, or whose arrays do not fit
together, is stale and rebuilt. File names that are not valid UTF-8 (kept by Python as surrogate escapes)
are hashed with :func:`os.fsencode` and stored as JSON ``\\udcXX`` escapes, so they survive the round trip.

The cache file is keyed by the reader's options and by the path, mtime and size of every annotation
file plus the mtime of the image folders (which changes when images are added or removed); any change
rebuilds it. In-place edits of image files are not seen: pass ``cache=False`` or delete the file.
Problems found while indexing are stored with the index and reported again on every cached load.

Where: ``cache_dir`` if given, else ``$MULTIBOX_CACHE_DIR``, else ``$XDG_CACHE_HOME/multibox`` or
``~/.cache/multibox`` -- the user's cache rather than the dataset folder, which may be read-only or shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multibox.atomic import atomic_path
from multibox.data.dataset import ImageRecord
from multibox.data.problems import Problem
from multibox.errors import UserError

__all__ = ["IndexData", "IndexBuilder", "default_cache_dir", "files_key", "load_or_build"]

#: Bump when IndexData or a reader's output changes meaning, so old cache files are rebuilt.
CACHE_VERSION = 2  # 2: .npz + JSON instead of a pickle
_ARRAYS = ("widths", "heights", "offsets", "boxes", "labels", "ignore")


@dataclass
class IndexData:
    """A split's records as flat arrays. N images, A annotations; image i owns rows offsets[i]:offsets[i+1]."""

    class_names: list[str]
    image_ids: list[str]  # [N]
    paths: list[str]  # [N]
    widths: np.ndarray  # int64 [N], oriented
    heights: np.ndarray  # int64 [N]
    offsets: np.ndarray  # int64 [N + 1]
    boxes: np.ndarray  # float32 [A, 4], pixel xyxy
    labels: np.ndarray  # int64 [A]
    ignore: np.ndarray  # bool [A]
    problems: list[Problem] = field(default_factory=list)  # those kept by the indexing log
    problem_counts: dict[str, int] = field(default_factory=dict)  # all of them, per kind
    notes: dict[str, int] = field(default_factory=dict)

    def records(self) -> list[ImageRecord]:
        o = self.offsets
        return [
            ImageRecord(
                image_id,
                path,
                int(w),
                int(h),
                self.boxes[o[i] : o[i + 1]],
                self.labels[o[i] : o[i + 1]],
                self.ignore[o[i] : o[i + 1]],
            )
            for i, (image_id, path, w, h) in enumerate(zip(self.image_ids, self.paths, self.widths, self.heights))
        ]


class IndexBuilder:
    """Accumulates images one at a time (VOC, YOLO) and concatenates them once into :class:`IndexData`."""

    def __init__(self) -> None:
        self.image_ids: list[str] = []
        self.paths: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self.counts: list[int] = []
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, image_id: str, path: str, width: int, height: int, boxes, labels, ignore) -> None:
        """boxes [M, 4] pixel xyxy, labels [M], ignore [M] of one image (already validated)."""
        self.image_ids.append(image_id)
        self.paths.append(path)
        self.sizes.append((width, height))
        self.counts.append(len(labels))
        self.parts.append((np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels), np.asarray(ignore)))

    def build(self, class_names: list[str]) -> IndexData:
        sizes = np.asarray(self.sizes, np.int64).reshape(-1, 2)
        parts = self.parts or [(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool))]
        return IndexData(
            class_names=list(class_names),
            image_ids=self.image_ids,
            paths=self.paths,
            widths=sizes[:, 0].copy(),
            heights=sizes[:, 1].copy(),
            offsets=np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)]).astype(np.int64),
            boxes=np.concatenate([p[0] for p in parts]).astype(np.float32),
            labels=np.concatenate([p[1] for p in parts]).astype(np.int64),
            ignore=np.concatenate([p[2] for p in parts]).astype(bool),
        )


def default_cache_dir() -> Path:
    """$MULTIBOX_CACHE_DIR, else $XDG_CACHE_HOME/multibox, else ~/.cache/multibox."""
    if os.environ.get("MULTIBOX_CACHE_DIR"):
        return Path(os.environ["MULTIBOX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "multibox"


def _text_bytes(text: str) -> bytes:
    """UTF-8 bytes of any str, lone surrogates included (they never make hashing fail)."""
    return text.encode("utf-8", "surrogatepass")


def _path_bytes(path: Path | str) -> bytes:
    """The file-system bytes of ``path`` (surrogate-escaped non-UTF-8 names give back their bytes)."""
    try:
        return os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        return _text_bytes(str(path))


def files_key(paths: Iterable[Path | str], extra: str = "") -> str:
    """Hex digest of ``extra`` and each path's (path, mtime_ns, size); a missing path counts as such.

    Paths are hashed as their file-system bytes (:func:`os.fsencode`), so a file name that is not valid
    UTF-8 (Latin-1 bytes on Linux) hashes like any other.
    """
    digest = hashlib.sha1(_text_bytes(f"v{CACHE_VERSION}\0{extra}"))
    for path in paths:
        digest.update(b"\0" + _path_bytes(path) + b"\0")
        try:
            st = os.stat(path)
            digest.update(f"{st.st_mtime_ns}\0{st.st_size}".encode())
        except (OSError, ValueError):  # ValueError: a NUL byte in a hand-made path
            digest.update(b"missing")
    return digest.hexdigest()


def _meta(key: str, index: IndexData) -> dict:
    """The JSON part of a cache file: everything of ``index`` that is not an array."""
    problems = [[p.kind, p.file, p.where, p.what, p.action] for p in index.problems]
    return {"version": CACHE_VERSION, "key": key, "class_names": index.class_names, "image_ids": index.image_ids,
            "paths": index.paths, "problems": problems, "problem_counts": index.problem_counts,
            "notes": index.notes}


def _from_parts(meta: dict, arrays: dict[str, np.ndarray]) -> IndexData:
    """IndexData of a parsed cache file; a TypeError/ValueError/KeyError when the parts do not fit."""
    index = IndexData(class_names=[str(n) for n in meta["class_names"]], image_ids=[str(i) for i in meta["image_ids"]],
                      paths=[str(p) for p in meta["paths"]],
                      **{name: arrays[name] for name in _ARRAYS},
                      problems=[Problem(*map(str, p)) for p in meta["problems"]],
                      problem_counts={str(k): int(v) for k, v in meta["problem_counts"].items()},
                      notes={str(k): int(v) for k, v in meta["notes"].items()})
    n, a = len(index.image_ids), len(index.labels)
    shapes_fit = (len(index.paths) == len(index.widths) == len(index.heights) == n and index.offsets.shape == (n + 1,)
                  and index.boxes.shape == (a, 4) and index.ignore.shape == (a,))
    if not shapes_fit or (n and (index.offsets[0] != 0 or index.offsets[-1] != a or np.any(np.diff(index.offsets) < 0))):
        raise ValueError("cache arrays do not fit together")
    return index


def _read(cache_file: Path, key: str) -> IndexData | None:
    """The index stored in ``cache_file`` for ``key``; None when absent, stale or not parseable."""
    try:
        with np.load(cache_file, allow_pickle=False) as stored:
            meta = json.loads(stored["meta"].tobytes().decode("ascii"))
            if meta.get("version") != CACHE_VERSION or meta.get("key") != key:
                return None
            arrays = {name: np.array(stored[name]) for name in _ARRAYS}
        return _from_parts(meta, arrays)
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError,
            zipfile.BadZipFile):
        return None  # absent, partial, an old pickle cache or hand-edited: rebuild


def _write(cache_file: Path, key: str, index: IndexData) -> None:
    """Atomic write (temp file + rename) so concurrent runs never read half a file; failures are harmless."""
    meta = json.dumps(_meta(key, index), ensure_ascii=True)  # ASCII: surrogate-escaped names as \udcXX
    arrays = {name: np.ascontiguousarray(getattr(index, name)) for name in _ARRAYS}
    try:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, meta=np.frombuffer(meta.encode("ascii"), np.uint8), **arrays)
    except (OSError, UserError):
        return  # a read-only cache dir only costs the next run a re-parse


def load_or_build(cache_file: Path | None, key: str, build: Callable[[], IndexData]) -> tuple[IndexData, bool]:
    """The cached index if ``cache_file`` holds one for ``key``, else ``build()`` (then stored).

    The file is stored with the suffix ``.npz`` (a ``.pkl`` of older versions is never opened).
    cache_file None disables caching. Returns (index, came_from_cache).
    """
    if cache_file is not None:
        cache_file = Path(cache_file).with_suffix(".npz")
        index = _read(cache_file, key)
        if index is not None:
            return index, True
    index = build()
    if cache_file is not None:
        _write(cache_file, key, index)
    return index, False
