"""Base class of the on-disk readers (VOC, COCO, YOLO): cached index, problem log, robust image loading.

A subclass says which files its index depends on (:meth:`FileDataset._index_files`) and how to parse
them (:meth:`FileDataset._build_index`); this class caches the parse, replays its problems into the
dataset's :class:`ProblemLog`, and loads images with :func:`load_rgb`, raising :class:`BadImage` for a
file that cannot be used.
"""

from __future__ import annotations

import hashlib
import os
from abc import abstractmethod
from pathlib import Path

from PIL import Image

from multibox.data.dataset import DetectionDataset
from multibox.data.images import DEFAULT_MAX_PIXELS, load_rgb, pixel_limit
from multibox.data.index_cache import IndexData, default_cache_dir, files_key, load_or_build
from multibox.data.problems import ProblemLog

__all__ = ["FileDataset"]


class FileDataset(DetectionDataset):
    """A split read from files. Options common to every reader (all keyword-only):

    names: class names fixing the label order (objects of other classes are reported and dropped);
        default: what the annotation files say.
    cache: keep the parsed index on disk (see :mod:`multibox.data.index_cache`); cache_dir: where.
    probe_images: read every image header while indexing (the oriented size, missing or unreadable
        files found up front). Off trusts the annotation's sizes; problems then show on load.
    max_pixels: decompression-bomb limit per image.
    problems: the log receiving problems (default: a new one printing to stderr).
    """

    format: str = "files"

    def __init__(
        self,
        split: str,
        *,
        names: list[str] | None = None,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        probe_images: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        problems: ProblemLog | None = None,
    ):
        self.split = split
        self.names = list(names) if names is not None else None
        self.probe_images = probe_images
        self.max_pixels = pixel_limit(max_pixels)  # the CLI's --max-pixels, when given, also keys the cache
        self.problems = problems if problems is not None else ProblemLog()
        self.from_cache = False
        self._load_index(cache, cache_dir)

    # --- what subclasses provide -------------------------------------------------------------
    @property
    @abstractmethod
    def source(self) -> Path:
        """The file or folder identifying this split (names the cache file and the dataset)."""

    @abstractmethod
    def _index_files(self) -> list[Path]:
        """Every file or folder whose change must rebuild the index."""

    @abstractmethod
    def _build_index(self, log: ProblemLog) -> IndexData:
        """Parse the annotations; report problems to ``log``."""

    # --- index -------------------------------------------------------------------------------
    def _options_key(self) -> str:
        return f"{self.format}|{self.source}|{self.split}|{self.names}|{self.probe_images}|{self.max_pixels}"

    def _cache_file(self, cache: bool, cache_dir: str | Path | None) -> Path | None:
        if not cache:
            return None
        # fsencode: a non-UTF-8 folder name (Latin-1 bytes, decoded with surrogates) still has its bytes.
        tag = hashlib.sha1(os.fsencode(Path(self.source).resolve())).hexdigest()[:12]
        return Path(cache_dir or default_cache_dir()) / f"{self.format}-{self.split}-{tag}.pkl"

    def _fresh_index(self) -> IndexData:
        # Problems are collected quietly and replayed below, so cached and fresh loads print the same.
        log = ProblemLog(echo=None, max_kept_per_kind=self.problems.max_kept_per_kind)
        index = self._build_index(log)
        index.problems, index.problem_counts, index.notes = log.problems, dict(log.counts), dict(log.notes)
        return index

    def _load_index(self, cache: bool, cache_dir: str | Path | None) -> None:
        key = files_key(self._index_files(), self._options_key())
        index, self.from_cache = load_or_build(self._cache_file(cache, cache_dir), key, self._fresh_index)
        self.problems.absorb(index.problems, index.problem_counts, index.notes)
        self.class_names = list(index.class_names)
        self.records = index.records()
        self.name = f"{self.format}:{self.source}:{self.split}"

    # --- pixels ------------------------------------------------------------------------------
    def load_image(self, index: int, target_size: tuple[int, int] | None = None) -> Image.Image:
        """RGB image of ``records[index]`` in its oriented frame; raises :class:`BadImage` if unusable.

        target_size: (width, height) the caller needs at least; large JPEGs may then come back smaller
            than ``records[index].width/height`` (scale boxes by ``image.width / record.width``).
        """
        record = self.records[index]
        return load_rgb(record.path, self.max_pixels, target_size, self.problems)
