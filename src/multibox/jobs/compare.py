"""`multibox compare`: several runs' detection-rate curves on one plot and in one table."""

from __future__ import annotations

import json
from pathlib import Path

from multibox.errors import UserError
from multibox.reports.markdown import compare_markdown
from multibox.reports.plots import plot_detection_rate


def compare(metrics_paths: list[str], out_dir: str | Path, names: list[str] | None = None) -> dict[str, dict]:
    """`multibox compare`: several runs' detection-rate curves on one plot and one table.

    Writes OUT_DIR/detection_rate.png and OUT_DIR/compare.md; returns {run name: metrics}.
    """
    runs = load_runs(metrics_paths, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_detection_rate({name: m["curve"] for name, m in runs.items()}, out / "detection_rate.png")
    (out / "compare.md").write_text(compare_markdown(runs))
    return runs


def load_metrics(path: str | Path) -> dict:
    """A metrics.json (or a run directory holding one) with at least a detection-rate curve."""
    path = Path(path)
    path = path / "metrics.json" if path.is_dir() else path
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such metrics file") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a metrics.json ({exc})") from None
    if not isinstance(metrics, dict) or not {"curve", "detection_rate"} <= set(metrics):
        raise UserError(f"{path}: not a metrics.json of multibox evaluate/baseline (no curve, detection_rate)")
    return metrics


def load_runs(paths: list[str], names: list[str] | None) -> dict[str, dict]:
    """{name: metrics}; names from ``names``, else each run's method (with its folder when two share one)."""
    metrics = [load_metrics(p) for p in paths]
    if names is not None and len(names) != len(paths):
        raise UserError(f"--names has {len(names)} name(s) for {len(paths)} metrics file(s)")
    if names is None:
        methods = [m.get("method", "DeepMultiBox") for m in metrics]
        names = [f"{m} ({Path(p).resolve().parent.name if Path(p).is_file() else Path(p).name})"
                 if methods.count(m) > 1 else m for m, p in zip(methods, paths)]
    if len(set(names)) != len(names):
        raise UserError(f"two runs share a name ({', '.join(names)}); give --names A,B,...")
    return dict(zip(names, metrics))
