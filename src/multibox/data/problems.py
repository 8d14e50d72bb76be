"""Bad input is never fatal and never silent: every skipped, dropped or repaired item becomes a Problem.

A :class:`Problem` names the file, where in it (line, object, annotation), what is wrong and what was done
about it; it prints as one line::

    data/Annotations/0007.xml: object 2 'dog': degenerate box (x2 <= x1) -> object dropped

Readers add problems to a :class:`ProblemLog` while indexing; image-content problems (corrupt pixels, a
decompression bomb) only show when the image is decoded, so :meth:`FileDataset.load_image` raises
:class:`BadImage` carrying its Problem, and the training pipeline catches it, reports it and draws another
sample. Harmless facts worth knowing (negative images, converted colour modes) are *notes*: counted and
shown in :meth:`ProblemLog.summary`, not printed one by one.

Quiet by default: a log that prints to the terminal (``echo=True``) prints one line per *kind* of
problem -- its count and the first one -- not one line per problem (DeepForest-style data has dozens of
boxes touching the border in every file). Every line is still kept by this process's :class:`Channel`:
``multibox train`` writes them to ``RUN/problems.log`` (:func:`write_problems_log`), ``multibox data
check --verbose`` and ``MULTIBOX_VERBOSE=1`` (any command) print them one by one. Nothing is dropped
silently: each summary line says where the full list is.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from multibox.atomic import write_text_atomic

__all__ = [
    "Problem", "ProblemLog", "BadImage", "Channel", "printable", "channel", "set_verbose", "write_problems_log",
    "PROBLEMS_LOG", "kind_line",
]

PROBLEMS_LOG = "problems.log"  # in a run folder: every problem line of the run
MAX_CHANNEL_LINES = 200_000  # distinct lines a process keeps for problems.log; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input and what was done about it.

    kind is a short stable tag for counting (e.g. "degenerate-box"); file the offending file; where a
    location inside it ("line 3", "object 2 'dog'", "annotation id 17") or "" for the whole file.
    """

    kind: str
    file: str
    where: str
    what: str
    action: str

    def __str__(self) -> str:
        place = f"{self.file}: {self.where}" if self.where else self.file
        return printable(f"{place}: {self.what} -> {self.action}")


def printable(text: str) -> str:
    """``text`` safe to print on any UTF-8 stream: a file name's non-UTF-8 bytes (Python decodes them to
    lone surrogates) become ``\\xe9`` escapes instead of failing the print."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that did not come from file-name bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class BadImage(Exception):
    """An image that cannot be used (missing, corrupt, truncated, too large). ``problem`` says why.

    Raised by :meth:`FileDataset.load_image`; the training pipeline catches it, reports ``problem`` and
    replaces the sample by another one.
    """

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Channel:
    """This process's terminal policy for problems, and its record of every distinct problem line.

    verbose: print each problem (``MULTIBOX_VERBOSE=1``, ``data check --verbose``); otherwise one
    summary line per kind. lines: every distinct line reported through a default log, in order (at most
    MAX_CHANNEL_LINES; ``dropped`` counts the rest), what :func:`write_problems_log` writes.
    """

    def __init__(self) -> None:
        self.verbose = os.environ.get("MULTIBOX_VERBOSE", "") not in ("", "0")
        self.lines: dict[str, None] = {}  # an ordered set
        self.dropped = 0
        self.printed: set[str] = set()  # summary lines already on the terminal
        self.kinds_shown: set[str] = set()  # kinds the terminal has heard of (a first problem or a summary)
        self.log_file: Path | None = None

    def keep(self, line: str) -> bool:
        """Record ``line``; False if it was already recorded (a split opened twice replays its problems)."""
        if line in self.lines:
            return False
        if len(self.lines) < MAX_CHANNEL_LINES:
            self.lines[line] = None
        else:
            self.dropped += 1
        return True

    def show_once(self, line: str) -> None:
        """Print ``line`` and where every line is listed on stderr, unless this process printed ``line``
        already (a split opened again, once the run's problems.log is known, says nothing new)."""
        if line not in self.printed:
            self.printed.add(line)
            _stderr_line(f"{line} ({self.where_listed()})")

    def where_listed(self) -> str:
        """Where the user finds every line (said by each summary line)."""
        if self.log_file is not None:
            return f"all listed in {self.log_file}"
        return ("all listed in a train run's problems.log, by `multibox data check --verbose`, or with "
                "MULTIBOX_VERBOSE=1")


_CHANNEL = Channel()


def channel() -> Channel:
    """The process's :class:`Channel`."""
    return _CHANNEL


def set_verbose(verbose: bool) -> None:
    """Print every problem line (True) or one summary line per kind (False, the default)."""
    _CHANNEL.verbose = verbose


def write_problems_log(folder: str | Path) -> Path | None:
    """Write every problem line this process has seen to ``folder``/problems.log (atomically; rewritten
    whole at each call, so it grows with the run). None, and no file, when there were no problems.
    Later summary lines name the file."""
    if not _CHANNEL.lines and not _CHANNEL.dropped:
        return None
    path = Path(folder) / PROBLEMS_LOG
    more = [f"... and {_CHANNEL.dropped} more problem line(s) not kept"] if _CHANNEL.dropped else []
    write_text_atomic(path, "\n".join([*_CHANNEL.lines, *more]) + "\n")
    _CHANNEL.log_file = path
    return path


def kind_line(kind: str, count: int, first: Problem | None) -> str:
    """One line for a kind: its count and its first problem."""
    example = f", the first: {first}" if first is not None else ""
    return f"{kind}: {count} problem(s){example}"


class ProblemLog:
    """Collects problems and counts notes; says on the terminal what it collected.

    echo: True (default): the process's :class:`Channel` -- each line recorded for problems.log, the
        terminal gets the first problem of each kind and one summary line per kind of a replayed index
        (every line when verbose); a callable: each line goes to it (e.g. a report); None or False: quiet.
    max_kept_per_kind: problems kept in memory per kind; the rest are counted (and still echoed), so a
        dataset with a million bad boxes does not hold a million objects. None keeps all.
    The same whole-file problem reported twice (an image that fails in every epoch) is echoed and counted
    once; only whole-file problems are remembered for that, so the memory stays bounded by the file count.
    """

    def __init__(
        self,
        echo: Callable[[str], None] | None | bool = True,
        max_kept_per_kind: int | None = 1000,
    ):
        self._channel = echo is True
        self._echo = None if echo is True else (echo or None)
        self.max_kept_per_kind = max_kept_per_kind
        self.problems: list[Problem] = []
        self.counts: Counter[str] = Counter()  # problems per kind, including those not kept
        self.notes: Counter[str] = Counter()  # harmless facts per kind
        self.first: dict[str, Problem] = {}  # the first problem of each kind
        self._seen: set[Problem] = set()

    def __getstate__(self) -> dict:
        # A log travels to DataLoader workers with its dataset; a bound echo (e.g. a file's write) may not
        # pickle, so workers fall back to the process's channel.
        state = self.__dict__.copy()
        if state["_echo"] is not None:
            state["_echo"], state["_channel"] = None, True
        return state

    def _record(self, problem: Problem) -> bool:
        """Count and keep ``problem``; False if this whole-file problem was already recorded."""
        if not problem.where:
            if problem in self._seen:
                return False
            self._seen.add(problem)
        self.counts[problem.kind] += 1
        self.first.setdefault(problem.kind, problem)
        if self.max_kept_per_kind is None or self.counts[problem.kind] <= self.max_kept_per_kind:
            self.problems.append(problem)
        return True

    def report(self, problem: Problem) -> None:
        """Record ``problem`` and echo its line, unless this whole-file problem was already recorded.
        Through the channel, quietly: only the first problem of its kind reaches the terminal."""
        if not self._record(problem):
            return
        if self._echo is not None:
            self._echo(str(problem))
        elif self._channel and _CHANNEL.keep(str(problem)):
            if _CHANNEL.verbose:
                _stderr_line(str(problem))
            elif problem.kind not in _CHANNEL.kinds_shown:
                _CHANNEL.kinds_shown.add(problem.kind)
                _stderr_line(f"{problem} (the first {problem.kind} problem; more are counted, not printed: "
                             f"{_CHANNEL.where_listed()})")

    def add(self, kind: str, file: str, where: str, what: str, action: str) -> Problem:
        """Build, record and return a :class:`Problem`."""
        problem = Problem(kind, str(file), where, what, action)
        self.report(problem)
        return problem

    def absorb(self, problems: Iterable[Problem], counts: dict[str, int], notes: dict[str, int]) -> None:
        """Take over another log's contents (e.g. one stored with a cached index).

        counts may exceed the problems listed (the other log's max_kept_per_kind); the surplus is counted
        and echoed as one line per kind. Through the quiet channel: one summary line per kind instead.
        """
        listed: Counter[str] = Counter()
        quiet = self._echo is None and self._channel and not _CHANNEL.verbose
        for problem in problems:
            listed[problem.kind] += 1
            if quiet and self._record(problem):
                _CHANNEL.keep(str(problem))
            elif not quiet:
                self.report(problem)
        for kind, n in counts.items():
            if n > listed[kind]:
                self.counts[kind] += n - listed[kind]
                self._say(f"... and {n - listed[kind]} more {kind} problem(s) not listed")
        self.notes.update(notes)
        if quiet:
            for kind, n in sorted(counts.items()):
                _CHANNEL.kinds_shown.add(kind)
                _CHANNEL.show_once(kind_line(kind, n, self.first.get(kind)))

    def _say(self, line: str) -> None:
        if self._echo is not None:
            self._echo(line)
        elif self._channel and _CHANNEL.keep(line) and _CHANNEL.verbose:
            _stderr_line(line)

    def note(self, kind: str, count: int = 1) -> None:
        """Count a harmless fact (e.g. "negative-image", "converted L->RGB")."""
        self.notes[kind] += count

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:  # "if log:" means "were there problems"
        return self.total > 0

    def __len__(self) -> int:
        return self.total

    def kind_lines(self) -> list[str]:
        """One line per kind of problem: its count and the first one."""
        return [kind_line(kind, n, self.first.get(kind)) for kind, n in sorted(self.counts.items())]

    def summary(self) -> str:
        """Multi-line totals: problems per kind (with the first of each), where they are all listed when
        this log prints through the channel, then notes per kind."""
        lines = [f"{self.total} problem(s)" + (":" if self.total else "")]
        lines += [f"  {line}" for line in self.kind_lines()]
        if self.total and self._channel and not _CHANNEL.verbose:
            lines.append(f"  ({_CHANNEL.where_listed()})")
        if self.notes:
            lines.append("notes (not problems):")
            lines += [f"  {kind}: {n}" for kind, n in sorted(self.notes.items())]
        return "\n".join(lines)
