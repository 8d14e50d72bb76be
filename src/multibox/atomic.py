"""Atomic file writes: a file is either its old content or its complete new content, never a partial one.

Every writer goes through :func:`atomic_path`: the data is written to a temporary file in the *same*
folder (``.NAME.XXXX.tmp``, so the final ``os.replace`` is a rename on one file system, atomic on POSIX),
flushed and fsync'ed, then renamed onto the target. A kill -9, a full disk or a read-only file system
therefore leaves the previous file intact.

* **Permissions.** :func:`tempfile.mkstemp` creates its file 0600; the result is chmod'ed to
  ``0o666 & ~umask``, what ``open(path, "w")`` would give, so another user's serving process can read
  a checkpoint the umask allows it to read.
* **Errors.** An :class:`OSError` (ENOSPC, EROFS, EACCES, the target is a folder, a parent is a file...)
  removes the temporary file and becomes a one-line :class:`multibox.errors.UserError` naming the path.
* **Leftovers.** A killed write leaves its ``.NAME.*.tmp`` behind; :func:`remove_leftovers` deletes
  those of one target (the checkpoint writer calls it before each save).
"""

from __future__ import annotations

import errno
import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from multibox.errors import EnvironmentFault, UserError

__all__ = ["atomic_path", "write_text_atomic", "write_bytes_atomic", "remove_leftovers", "os_error_message"]


def _umask() -> int:
    """The process umask (os.umask can only be read by setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def os_error_message(path: str | Path, error: OSError) -> str:
    """One line naming ``path`` and what the operating system said (no errno numbers, no traceback)."""
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EISDIR: "is a folder, expected a file",
        errno.ENOTDIR: "a parent of this path is a file, not a folder",
        errno.EDQUOT: "disk quota exceeded",
    }
    reason = reasons.get(error.errno, error.strerror or type(error).__name__)
    return f"{path}: cannot write ({reason})"


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"{path}: cannot write (is a folder, expected a file)")
    parent = path.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UserError(f"{path}: cannot write ({folder} is a file, not a folder)")
            break


def _make_temp(path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise EnvironmentFault(os_error_message(path, error)) from None
    os.close(fd)
    return tmp


def _fsync(path: str) -> None:
    """Flush the temporary file's data to disk, so the rename never exposes an empty file after a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chmod_like_open(path: str) -> None:
    """Give ``path`` the permissions ``open(path, "w")`` would (0o666 & ~umask), not mkstemp's 0600.
    File systems without POSIX modes (some network or FUSE mounts) refuse chmod: the write still counts."""
    try:
        os.chmod(path, 0o666 & ~_umask())
    except OSError:
        pass


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    For writers that want a path (``torch.save``, ``torch.onnx.export``). On any exception the temporary
    file is removed; an :class:`OSError` becomes a one-line UserError naming ``path``, others re-raise.
    """
    path = Path(path)
    _check_target(path)
    tmp = _make_temp(path)
    try:
        yield Path(tmp)
        _fsync(tmp)
        _chmod_like_open(tmp)
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise EnvironmentFault(os_error_message(path, error)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def remove_leftovers(path: str | Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files killed writes of ``path`` left in its folder; returns them.

    Only call it where one writer owns ``path`` (a run folder): a concurrent write's temporary file
    would be removed too.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            leftover.unlink()
            removed.append(leftover)
        except OSError:  # another process removed it, or the folder is read-only: the save reports that
            pass
    return removed
