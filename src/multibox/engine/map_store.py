"""Where cached feature maps live: in memory up to a budget, the rest in a memory-mapped file on disk.

The cached-feature scheme (:mod:`multibox.engine.feature_cache`) holds every training image's maps
under every transform and scale; on a large dataset that outgrows memory long before it outgrows the
disk. Maps past ``train.cache_memory_gb`` are appended to one fp16 file and read back as views of a
numpy memmap, so a training window reads only its few cells from the page cache and the resident set
stays near the budget. numpy's memmap is the whole mechanism: no format of our own beyond raw fp16
in the order the maps were cached (the file is private to the run and deleted with it).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from multibox.errors import EnvironmentFault

__all__ = ["MapStore", "disk_room"]


def disk_room(folder: Path) -> int:
    """Free bytes on the file system of ``folder`` (or its nearest existing parent)."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


class MapStore:
    """fp16 maps kept in memory while ``budget`` bytes last, appended to ``folder``/maps.f16 after that.

    ``add`` returns a handle (the map's index); ``finish`` maps the file once caching is done and
    ``get`` returns each map (a memmap view for spilled ones). The folder is a fresh temporary one
    under ``parent`` (the system's temp dir by default), removed when the store is collected or the
    process exits: spilled maps are never read by another run, so nothing stale can be.
    """

    def __init__(self, budget: int, parent: str | Path | None = None) -> None:
        self.budget, self.in_memory, self.spilled_bytes = budget, 0, 0
        self.parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        self._maps: list[Tensor | tuple[int, tuple[int, ...]]] = []  # a tensor, or (offset, shape) in the file
        self._file, self.folder, self._mmap = None, None, None

    def add(self, features: Tensor) -> int:
        """Keep ``features`` (fp16, CPU); its handle."""
        size = features.numel() * features.element_size()
        if self.in_memory + size <= self.budget:
            self.in_memory += size
            self._maps.append(features)
        else:
            self._maps.append((self.spilled_bytes // 2, tuple(features.shape)))
            self._write(features.contiguous().numpy().tobytes())
            self.spilled_bytes += size
        return len(self._maps) - 1

    def _write(self, data: bytes) -> None:
        if self._file is None:
            self.parent.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix="multibox-feature-cache-", dir=self.parent))
            self._file = open(self.folder / "maps.f16", "wb")  # noqa: SIM115 - closed in finish()
            weakref.finalize(self, shutil.rmtree, self.folder, True)
        try:
            self._file.write(data)
        except OSError as exc:  # a full disk is the machine's fault, said in one line (docs/reliability.md)
            raise EnvironmentFault(f"{self.folder / 'maps.f16'}: cannot spill cached features: {exc.strerror}") from None

    def finish(self) -> None:
        """Close the spill file and map it (read-only pages, copy-on-write so torch gets a writable array)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._mmap = np.memmap(self.folder / "maps.f16", dtype=np.float16, mode="c")

    def get(self, handle: int) -> Tensor:
        """Map ``handle``: Tensor[C, G, G] fp16."""
        item = self._maps[handle]
        if isinstance(item, Tensor):
            return item
        offset, shape = item
        return torch.from_numpy(self._mmap[offset : offset + int(np.prod(shape))]).view(shape)

    def __len__(self) -> int:
        return len(self._maps)
