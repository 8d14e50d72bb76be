"""Atomic writes: complete file or the old one, umask permissions, one-line errors naming the path."""

import errno
import os
import stat
from pathlib import Path

import pytest

from multibox.atomic import atomic_path, remove_leftovers, write_bytes_atomic, write_text_atomic
from multibox.errors import UserError


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new ü")
    assert target.read_text(encoding="utf-8") == "new ü"
    assert _leftovers(target.parent) == []


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640  # not mkstemp's 0600


def test_failure_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "previous"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("code, reason", [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"),
    (errno.EDQUOT, "disk quota exceeded"),
])
def test_os_error_becomes_one_line_user_error(tmp_path, code, reason):
    target = tmp_path / "x.onnx"
    with pytest.raises(UserError) as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(code, os.strerror(code))
    assert str(info.value) == f"{target}: cannot write ({reason})"
    assert _leftovers(tmp_path) == [] and not target.exists()


def test_target_is_a_folder(tmp_path):
    with pytest.raises(UserError, match="is a folder, expected a file") as info:
        write_text_atomic(tmp_path, "x")
    assert str(tmp_path) in str(info.value)


def test_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder") as info:
        write_text_atomic(tmp_path / "file" / "sub" / "report.md", "x")
    assert "\n" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UserError, match="permission denied") as info:
            write_text_atomic(folder / "config.yaml", "a: 1")
    finally:
        folder.chmod(0o700)
    assert str(folder / "config.yaml") in str(info.value)


def test_remove_leftovers_only_touches_that_target(tmp_path):
    (tmp_path / ".last.pt.abc.tmp").write_bytes(b"x")
    (tmp_path / ".best.pt.abc.tmp").write_bytes(b"x")
    removed = remove_leftovers(tmp_path / "last.pt")
    assert [p.name for p in removed] == [".last.pt.abc.tmp"]
    assert _leftovers(tmp_path) == [".best.pt.abc.tmp"]
