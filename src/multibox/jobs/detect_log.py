"""What a `multibox detect` run keeps as it goes, so an interrupted run keeps its work.

* ``OUT/detect_args.json``: the model (path and SHA-256) and every option that changes the detections,
  written before the first image; a resumed run must match it.
* ``OUT/detections.jsonl``: one detections.json entry per line (JSON Lines), appended and flushed per
  image. After ``kill -9`` it is valid up to its last complete line; a partial last line is cut off when
  the run is resumed.
* ``OUT/detections.json``: the entries in the order of the inputs, written atomically at the end from the
  JSONL (read line by line: memory does not grow with the number of images).
* ``OUT/skipped.json``: the files that could not be read, with the reason (absent when none was).

A folder holding a detections.jsonl is continued with ``resume`` (the images already in it are skipped)
or started over with ``exist_ok``; without either it is refused in one line, as is ``resume`` with other
options than the run it continues, or ``resume`` on a folder with nothing to continue.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

from multibox.atomic import atomic_path, write_text_atomic
from multibox.errors import UserError

JSONL, ARGS, SKIPPED, FINAL = "detections.jsonl", "detect_args.json", "skipped.json", "detections.json"


class DetectFolderInUse(UserError):
    """An output folder holding another detect run, or a resume that does not fit the folder (the message
    names the parameters ``resume`` / ``exist_ok``; the CLI names its flags)."""


def model_identity(path: str | Path) -> dict:
    """{"path": the resolved path, "sha256": of the file (a folder: None)}: a model retrained in place differs."""
    path = Path(path)
    digest = None
    if path.is_file():
        sha = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                sha.update(block)
        digest = sha.hexdigest()
    return {"path": str(path.resolve()), "sha256": digest}


def complete_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(byte offset after the line, entry) of each complete line of a JSONL file; a last line without
    its newline (a write cut by kill -9) is not complete. A damaged complete line is a UserError."""
    with path.open("rb") as stream:
        end = 0
        for number, raw in enumerate(stream, 1):
            if not raw.endswith(b"\n"):
                return
            end += len(raw)
            try:
                yield end, json.loads(raw)
            except ValueError:
                raise UserError(f"{path}: line {number} is not a JSON entry; remove it (or the file) and "
                                f"run again") from None


def option_changes(old: dict, new: dict) -> list[str]:
    """``key old -> new`` for each option that differs between two detect_args records."""
    return [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)]


def claim(out: Path, args: dict, resume: bool, exist_ok: bool) -> Counter:
    """Make ``out`` ready for a run with ``args`` (module docstring); the paths already done (a Counter:
    an input given twice is done twice). Raises DetectFolderInUse in the cases the docstring lists."""
    log = out / JSONL
    if log.exists() and resume:
        old = json.loads((out / ARGS).read_text()) if (out / ARGS).is_file() else {}
        changes = option_changes(old, args)
        if changes:
            raise DetectFolderInUse(f"{out}: resume=True with other options than the run it continues "
                                    f"({'; '.join(changes)}); give the same ones, or exist_ok=True to start over")
        done, end = Counter(), 0
        for end, entry in complete_lines(log):
            done[entry["path"]] += 1
        with log.open("rb+") as stream:  # drop the half line a killed write left, if any
            stream.truncate(end)
        return done
    if log.exists() and not exist_ok:
        done = sum(1 for _ in complete_lines(log))
        raise DetectFolderInUse(f"{out}: holds a detect run ({done} image(s) in {JSONL}); resume=True continues "
                                f"it, exist_ok=True starts over, or choose another folder")
    if resume:
        raise DetectFolderInUse(f"{out}: no {JSONL} to continue; drop resume=True")
    out.mkdir(parents=True, exist_ok=True)
    for name in (JSONL, SKIPPED, FINAL):
        (out / name).unlink(missing_ok=True)
    write_text_atomic(out / ARGS, json.dumps(args, indent=1))
    return Counter()


def latest_run(root: Path, name: str = "detect") -> Path:
    """The newest ROOT/NAME, ROOT/NAME2, ... folder holding a detections.jsonl (what ``resume`` without a
    folder continues: the one the same command wrote last)."""
    suffixes = [(p, p.name[len(name):]) for p in root.glob(f"{name}*") if (p / JSONL).is_file()]
    numbered = [(int(n or 1), p) for p, n in suffixes if n == "" or n.isdigit()]
    if not numbered:
        raise DetectFolderInUse(f"resume=True: no {root / name}* folder holds a {JSONL} to continue; "
                                f"name the folder (out_dir)")
    return max(numbered)[1]


def write_skipped(out: Path, skipped: list[dict]) -> None:
    """OUT/skipped.json: [{"path", "reason"}] of the unreadable files (removed when there is none)."""
    if skipped:
        write_text_atomic(out / SKIPPED, json.dumps(skipped, indent=1))
    else:
        (out / SKIPPED).unlink(missing_ok=True)


def write_final(out: Path, paths: list[str]) -> tuple[int, int]:
    """OUT/detections.json from the JSONL: a JSON list with one entry per input path that has one, in the
    order of ``paths``, each entry on its own line exactly as its JSONL line holds it; (entries written,
    lines of the JSONL left out: files no longer among the inputs). Only the byte offsets of the lines
    are held, never all entries, and the lines are copied, not parsed and printed again (an indented
    dump of 200 tiles' 100 boxes took a tenth of `detect`'s time)."""
    log = out / JSONL
    where: dict[str, list[int]] = defaultdict(list)
    start = 0
    for end, entry in complete_lines(log):
        where[entry["path"]].append(start)
        start = end
    count = 0
    with log.open("rb") as source, atomic_path(out / FINAL) as tmp, open(tmp, "wb") as sink:
        sink.write(b"[")
        for path in paths:  # a loop over images, each copied from its line
            if not where.get(path):
                continue
            source.seek(where[path].pop(0))
            sink.write((b"," if count else b"") + b"\n" + source.readline().rstrip(b"\n"))
            count += 1
        sink.write(b"\n]" if count else b"]")
    return count, sum(len(offsets) for offsets in where.values())
