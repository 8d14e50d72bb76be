"""Bad input is never fatal and never silent: every skipped, dropped or repaired item becomes a Problem.

A :class:`Problem` names the file, where in it (line, object, annotation), what is wrong and what was done
about it; it prints as one line::

    data/Annotations/0007.xml: object 2 'dog': degenerate box (x2 <= x1) -> object dropped

Readers add problems to a :class:`ProblemLog` while indexing; image-content problems (corrupt pixels, a
decompression bomb) only show when the image is decoded, so :meth:`FileDataset.load_image` raises
:class:`BadImage` carrying its Problem, and the training pipeline catches it, reports it and draws another
sample. Harmless facts worth knowing (negative images, converted colour modes) are *notes*: counted and
shown in :meth:`ProblemLog.summary`, not printed one by one.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Problem", "ProblemLog", "BadImage", "printable"]


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


class ProblemLog:
    """Collects problems (printed one line each as they come) and counts notes.

    echo: where each new problem's line goes (default: stderr; None or False to stay quiet).
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
        self._echo = _stderr_line if echo is True else (echo or None)
        self.max_kept_per_kind = max_kept_per_kind
        self.problems: list[Problem] = []
        self.counts: Counter[str] = Counter()  # problems per kind, including those not kept
        self.notes: Counter[str] = Counter()  # harmless facts per kind
        self._seen: set[Problem] = set()

    def __getstate__(self) -> dict:
        # A log travels to DataLoader workers with its dataset; a bound echo (e.g. a file's write) may not
        # pickle, so workers fall back to stderr.
        state = self.__dict__.copy()
        if state["_echo"] not in (None, _stderr_line):
            state["_echo"] = _stderr_line
        return state

    def report(self, problem: Problem) -> None:
        """Record ``problem`` and echo its line, unless this whole-file problem was already recorded."""
        if not problem.where:
            if problem in self._seen:
                return
            self._seen.add(problem)
        self.counts[problem.kind] += 1
        if self.max_kept_per_kind is None or self.counts[problem.kind] <= self.max_kept_per_kind:
            self.problems.append(problem)
        if self._echo is not None:
            self._echo(str(problem))

    def add(self, kind: str, file: str, where: str, what: str, action: str) -> Problem:
        """Build, record and return a :class:`Problem`."""
        problem = Problem(kind, str(file), where, what, action)
        self.report(problem)
        return problem

    def absorb(self, problems: Iterable[Problem], counts: dict[str, int], notes: dict[str, int]) -> None:
        """Take over another log's contents (e.g. one stored with a cached index).

        counts may exceed the problems listed (the other log's max_kept_per_kind); the surplus is counted
        and echoed as one line per kind.
        """
        listed: Counter[str] = Counter()
        for problem in problems:
            listed[problem.kind] += 1
            self.report(problem)
        for kind, n in counts.items():
            if n > listed[kind]:
                self.counts[kind] += n - listed[kind]
                if self._echo is not None:
                    self._echo(f"... and {n - listed[kind]} more {kind} problem(s) not listed")
        self.notes.update(notes)

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

    def summary(self) -> str:
        """Multi-line totals: problems per kind, then notes per kind."""
        lines = [f"{self.total} problem(s)" + (":" if self.total else "")]
        lines += [f"  {kind}: {n}" for kind, n in sorted(self.counts.items())]
        if self.notes:
            lines.append("notes (not problems):")
            lines += [f"  {kind}: {n}" for kind, n in sorted(self.notes.items())]
        return "\n".join(lines)
