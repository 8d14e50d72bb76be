"""A full disk (or a read-only folder) while a job writes: one line naming the path, exit code 1 (the
machine's fault, not the input's), no partial file left behind, and the previous file intact (issue 12)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from multibox.cli import main
from tests.fixtures.models import tiny_config, train_tiny


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def last_line(err: str) -> str:
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    cfg = tiny_config()
    cfg.train.steps, cfg.train.checkpoint_every = None, 2
    cfg.save_yaml(path)
    return path


def test_full_disk_at_the_second_checkpoint_keeps_the_first(tmp_path, tiny_yaml, monkeypatch, capsys):
    real_save, calls = torch.save, []

    def save_then_fail(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # last.pt at step 2, best.pt at step 2, then last.pt at step 4
            disk_full()
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fail)
    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny_yaml), "--out", str(run), "--steps", "6"]) == 1
    line = last_line(capsys.readouterr().err)
    assert f"{run / 'last.pt'}: cannot write (no space left on the device)" in line
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2  # the previous checkpoint, intact
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_in_evaluate_and_export_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    model, _ = train_tiny(tmp_path / "model")
    import multibox.atomic as atomic

    monkeypatch.setattr(atomic, "_fsync", disk_full)  # every atomic write fails once its bytes are written
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", str(model), "--out", str(out), "--baselines", "none"]) == 1
    assert "cannot write (no space left on the device)" in last_line(capsys.readouterr().err)
    assert not out.exists() or not [p for p in out.iterdir() if p.suffix in {".json", ".md", ".tmp"}]
    target = tmp_path / "m.torchscript"
    assert main(["export", "--model", str(model), "--format", "torchscript", "--out", str(target)]) == 1
    assert f"{target}: cannot write (no space left on the device)" in last_line(capsys.readouterr().err)
    assert not list(tmp_path.glob("*.torchscript*")) and not list(tmp_path.glob(".m.torchscript*"))


def test_out_under_a_file_is_refused_before_training(tmp_path, tiny_yaml, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["train", "--config", str(tiny_yaml), "--out", str(tmp_path / "file" / "run"), "--steps", "1"]) == 2
    assert "is a file" in last_line(capsys.readouterr().err)


def test_disk_full_inside_torch_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, tiny_yaml, monkeypatch,
                                                                                  capsys):
    """torch's zip writer reports a short write as a RuntimeError, not an OSError (issue 21)."""
    real_save, calls = torch.save, []

    def save_then_short_write(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the second last.pt: part of the file written, then the writer gives up
            Path(f).write_bytes(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4736 vs 4624")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_short_write)
    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny_yaml), "--out", str(run), "--steps", "6"]) == 1
    line = last_line(capsys.readouterr().err)
    assert f"{run / 'last.pt'}: cannot write (no space left on the device)" in line
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_other_runtime_errors_of_torch_save_are_not_called_a_full_disk(tmp_path, monkeypatch):
    from multibox.engine.checkpoint import save_checkpoint

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not the disk")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="a bug, not the disk"):
        save_checkpoint(tmp_path / "x.pt", {"step": 1})
    assert not list(tmp_path.iterdir())
