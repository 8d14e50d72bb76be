"""A run's training curves: RUN/results.csv and RUN/results.png, rebuilt from RUN/log.jsonl after every
checkpoint (as Ultralytics redraws results.png each epoch), so a user can watch a run as it goes.

One row per logged step: each loss term, the learning rate, images/s, and the validation metrics
(``val_*``) on the steps where the model was scored. Columns appear in the order the log first names them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from multibox.atomic import write_bytes_atomic, write_text_atomic


def read_log(path: Path) -> list[dict]:
    """The log's records merged by step (a step's loss line and its validation line become one row);
    a line cut short by a killed process is skipped."""
    rows: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            rows.setdefault(record["step"], {}).update(record)
    return [rows[step] for step in sorted(rows)]


def columns(rows: list[dict]) -> list[str]:
    """"step" first, then every other key in the order the log first names it."""
    names = {"step": None}
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def results_csv(rows: list[dict]) -> str:
    """The rows as CSV text (empty cells where a row lacks a column)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def results_png(rows: list[dict], title: str) -> bytes:
    """One small plot per column against the step, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = columns(rows)[1:]
    cols = min(4, len(names)) or 1
    fig, axes = plt.subplots(math.ceil(len(names) / cols) or 1, cols, figsize=(3.2 * cols, 2.6 * math.ceil(len(names) / cols)),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        points = [(r["step"], r[name]) for r in rows if isinstance(r.get(name), (int, float))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 20 else None, markersize=3)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def write_results(run_dir: str | Path) -> None:
    """RUN/results.csv and RUN/results.png from RUN/log.jsonl (nothing when the log is empty)."""
    run_dir = Path(run_dir)
    log = run_dir / "log.jsonl"
    rows = read_log(log) if log.is_file() else []
    if not rows:
        return
    write_text_atomic(run_dir / "results.csv", results_csv(rows))
    write_bytes_atomic(run_dir / "results.png", results_png(rows, f"{run_dir} (step {rows[-1]['step']})"))
