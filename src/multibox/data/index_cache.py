"""The parsed index of a dataset split, stored flat and cached on disk so a split is parsed once.

:class:`IndexData` keeps all N images' boxes in single arrays (A annotations in total) with per-image
offsets: one pickle of a few numpy arrays loads in well under a second even for a million boxes, where
a pickle of a million small per-image arrays would not. Records are numpy *views* into those arrays.

The cache file is keyed by the reader's options and by the path, mtime and size of every annotation
file plus the mtime of the image folders (which changes when images are added or removed); any change
rebuilds it. In-place edits of image files are not seen: pass ``cache=False`` or delete the file.
Problems found while indexing are stored with the index and reported again on every cached load.

Where: ``cache_dir`` if given, else ``$MULTIBOX_CACHE_DIR``, else ``$XDG_CACHE_HOME/multibox`` or
``~/.cache/multibox`` -- the user's cache rather than the dataset folder, which may be read-only or shared.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multibox.data.dataset import ImageRecord
from multibox.data.problems import Problem

__all__ = ["IndexData", "IndexBuilder", "default_cache_dir", "files_key", "load_or_build"]

#: Bump when IndexData or a reader's output changes meaning, so old cache files are rebuilt.
CACHE_VERSION = 1


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


def files_key(paths: Iterable[Path | str], extra: str = "") -> str:
    """Hex digest of ``extra`` and each path's (path, mtime_ns, size); a missing path counts as such."""
    digest = hashlib.sha1(f"v{CACHE_VERSION}\0{extra}".encode())
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"\0{path}\0{st.st_mtime_ns}\0{st.st_size}".encode())
        except OSError:
            digest.update(f"\0{path}\0missing".encode())
    return digest.hexdigest()


def _read(cache_file: Path, key: str) -> IndexData | None:
    try:
        with open(cache_file, "rb") as f:
            stored_key, index = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError):
        return None  # absent, partial or from an incompatible version: rebuild
    return index if stored_key == key else None


def _write(cache_file: Path, key: str, index: IndexData) -> None:
    """Atomic write (temp file + rename) so concurrent runs never read half a file; failures are harmless."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=cache_file.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump((key, index), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_file)
    except OSError:
        return  # a read-only cache dir only costs the next run a re-parse


def load_or_build(cache_file: Path | None, key: str, build: Callable[[], IndexData]) -> tuple[IndexData, bool]:
    """The cached index if ``cache_file`` holds one for ``key``, else ``build()`` (then stored).

    cache_file None disables caching. Returns (index, came_from_cache).
    """
    if cache_file is not None:
        index = _read(cache_file, key)
        if index is not None:
            return index, True
    index = build()
    if cache_file is not None:
        _write(cache_file, key, index)
    return index, False
