"""`multibox compare`: several runs' detection-rate curves on one plot and in one table.

A metrics.json may have been edited by hand: every value the table and plot use is checked when the
file is read (a one-line UserError naming the file and the key), never a traceback half-way through.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from multibox.atomic import write_text_atomic
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
    write_text_atomic(out / "compare.md", compare_markdown(runs))
    return runs


def load_metrics(path: str | Path) -> dict:
    """A metrics.json (or a run directory holding one) with at least a detection-rate curve."""
    path = Path(path)
    path = path / "metrics.json" if path.is_dir() else path
    try:
        metrics = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such metrics file") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a metrics.json ({exc})") from None
    except RecursionError:
        raise UserError(f"{path}: not a metrics.json (JSON nested too deeply)") from None
    if not isinstance(metrics, dict) or not {"curve", "detection_rate"} <= set(metrics):
        raise UserError(f"{path}: not a metrics.json of multibox evaluate/baseline (no curve, detection_rate)")
    check_metrics(metrics, path)
    return metrics


def _is_rate(value) -> bool:
    """A number in [0, 1] (a detection rate, an AP); bools and NaN are not."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _is_score(value) -> bool:
    """What the table prints as a fraction: a rate, None (undefined) or COCO's -1."""
    return value is None or value == -1 or _is_rate(value)


def check_metrics(metrics: dict, path: Path) -> None:
    """UserError naming ``path`` and the key when a value compare uses has the wrong type or range."""
    curve = metrics["curve"]
    if not isinstance(curve, list) or not curve:
        raise UserError(f"{path}: 'curve' must be a non-empty list of detection rates (one per box count)")
    bad = next((k for k, v in enumerate(curve) if not _is_rate(v)), None)
    if bad is not None:
        raise UserError(f"{path}: curve[{bad}] {str(curve[bad])[:30]!r} is not a detection rate in [0, 1]")
    rates = metrics["detection_rate"]
    if not isinstance(rates, dict):
        raise UserError(f"{path}: 'detection_rate' must map box counts to detection rates, e.g. {{\"10\": 0.5}}")
    bad = next((k for k, v in rates.items() if not (v is None or _is_rate(v))), None)
    if bad is not None:
        raise UserError(f"{path}: detection_rate[{bad!r}] {str(rates[bad])[:30]!r} is not a detection rate in [0, 1]")
    if not _is_score(metrics.get("pr_ap50")):
        raise UserError(f"{path}: 'pr_ap50' {str(metrics['pr_ap50'])[:30]!r} is not a number in [0, 1]")
    coco = metrics.get("coco", {})
    if not isinstance(coco, dict) or not _is_score(coco.get("AR100")):
        raise UserError(f"{path}: 'coco' must be an object whose AR100 is a number in [0, 1]")
    if not isinstance(metrics.get("method", ""), str):
        raise UserError(f"{path}: 'method' {str(metrics['method'])[:30]!r} is not text")


def load_runs(paths: list[str], names: list[str] | None) -> dict[str, dict]:
    """{name: metrics}; names from ``names``, else each run's method (with its folder when two share one)."""
    metrics = [load_metrics(p) for p in paths]
    if names is not None and len(names) != len(paths):
        raise UserError(f"names: {len(names)} name(s) for {len(paths)} metrics file(s)")
    if names is None:
        methods = [m.get("method", "DeepMultiBox") for m in metrics]
        names = [f"{m} ({Path(p).resolve().parent.name if Path(p).is_file() else Path(p).name})"
                 if methods.count(m) > 1 else m for m, p in zip(methods, paths)]
    if len(set(names)) != len(names):
        raise UserError(f"two runs share a name ({', '.join(names)}); give each a display name (names)")
    return dict(zip(names, metrics))
