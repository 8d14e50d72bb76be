"""Run folders that never lose work: where a job writes when no folder is named (runs/train, runs/train2,
... as Ultralytics numbers them), and which folder a new training run may claim.

A training run folder holds ``last.pt`` (everything ``--resume`` needs), ``best.pt`` (the weights to ship),
``config.yaml``, ``log.jsonl``, ``results.csv`` and ``results.png``. Runs written before last.pt existed
hold ``model.pt`` instead; they are still found and resumed.
"""

from __future__ import annotations

import re
from pathlib import Path

from multibox.errors import UserError

LAST, BEST, LEGACY = "last.pt", "best.pt", "model.pt"
RUNS_ROOT = Path("runs")


class RunFolderInUse(UserError):
    """A new run was asked to write into a folder that holds another run's files."""


class NothingToResume(UserError):
    """A run was asked to resume in a folder that holds no checkpoint."""


def is_empty(folder: Path) -> bool:
    """True when ``folder`` does not exist or holds nothing."""
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def next_run_dir(name: str, root: Path = RUNS_ROOT) -> Path:
    """ROOT/NAME when it is free (absent or empty), else the first free ROOT/NAME2, NAME3, ..."""
    if is_empty(root / name):
        return root / name
    taken = [int(m.group(1)) for p in root.glob(f"{name}*") if (m := re.fullmatch(re.escape(name) + r"(\d+)", p.name))]
    number = max(taken, default=1) + 1
    while not is_empty(root / f"{name}{number}"):
        number += 1
    return root / f"{name}{number}"


def last_checkpoint(out: Path) -> Path | None:
    """The checkpoint to resume in a run folder: last.pt, or model.pt of older runs; None when neither."""
    for name in (LAST, LEGACY):
        if (out / name).is_file():
            return out / name
    return None


def output_dir(out_dir: str | Path | None, name: str) -> Path:
    """``out_dir``, or the next free runs/NAME, runs/NAME2, ... (evaluate, detect, baseline, compare)."""
    return Path(out_dir) if out_dir is not None else next_run_dir(name)


def claim_run_dir(out: Path, resume: bool, exist_ok: bool) -> None:
    """Check that a training run may write into ``out``: a folder (no file in the way); without
    ``resume``, new or empty unless ``exist_ok`` (its old files are then written over). Whether a resumed
    folder holds a checkpoint is :func:`multibox.engine.resume.restore`'s to say (on every rank)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file, not a run folder")
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UserError(f"{out}: {blocked} is a file, not a folder")
    if not resume and not exist_ok and not is_empty(out):
        held = sorted(p.name for p in out.iterdir())
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise RunFolderInUse(f"{out}: holds a previous run ({shown}); resume it, write over it, or choose another folder")


RUN_FILES = (LAST, BEST, LEGACY, "log.jsonl", "results.csv", "results.png")


def clear_run_files(out: Path) -> None:
    """Remove the files a previous run left in ``out`` (a new run reusing the folder starts clean: its
    log does not continue the old one, and an old best.pt is not mistaken for this run's)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
