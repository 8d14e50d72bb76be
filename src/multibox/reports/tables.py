"""The formatting every report shares: one Markdown table, one percent and one fraction format."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|:--" + "|--:" * (len(header) - 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def fraction(value: float | None) -> str:
    """Like the paper's tables (.413); undefined values (None, COCO's -1) as a dash."""
    return "–" if value is None or value < 0 else f"{value:.3f}"
