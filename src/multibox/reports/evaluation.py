"""The files of one evaluation: metrics.json, report.md, detection_rate.png and the PR curve, each
written atomically (a failure leaves the previous file, never a partial one)."""

from __future__ import annotations

import json
from pathlib import Path

from multibox.atomic import write_text_atomic
from multibox.reports.markdown import method_rows, write_markdown
from multibox.reports.plots import plot_detection_rate, plot_pr_curves


def write_report(metrics: dict, out_dir: str | Path, pr_curves: dict[str, dict] | None = None) -> None:
    """metrics.json, detection_rate.png and report.md; with ``pr_curves`` ({method: curve}) also
    pr_curve.json and pr_curve.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    rows = method_rows(metrics)
    plot_detection_rate({name: m["curve"] for name, m in rows.items()}, out / "detection_rate.png")
    if pr_curves:
        write_text_atomic(out / "pr_curve.json", json.dumps(pr_curves))
        plot_pr_curves(pr_curves, out / "pr_curve.png")
    write_markdown(metrics, out / "report.md", pr_plot=bool(pr_curves))
