"""Short human-readable summaries printed at the end of `evaluate`, `baseline`, `compare` and `demo`.

The full reports are files (report.md, compare.md, the plots); these fixed-width tables repeat their
headline numbers on the terminal.
"""

from __future__ import annotations

from pathlib import Path

from multibox.reports.markdown import method_rows, reported_ks
from multibox.reports.tables import fraction
from multibox.reports.training_curves import read_log


def rate_lines(rows: dict[str, dict]) -> list[str]:
    """Fixed-width lines: detection rate (%) at each reported k, class-agnostic AP50 and COCO AR@100 per row
    (``rows``: {name: metrics with "detection_rate" and optionally "pr_ap50", "coco"})."""
    ks = reported_ks([m["detection_rate"] for m in rows.values()])
    width = max([22, *(len(name) + 2 for name in rows)])
    lines = [f"{'boxes per image':<{width}}" + "".join(f"{k:>8}" for k in ks) + f"{'AP50':>8}{'AR@100':>8}"]
    for name, m in rows.items():
        rates = "".join(f"{100 * m['detection_rate'][k]:>7.1f}%" if k in m["detection_rate"] else f"{'-':>8}" for k in ks)
        lines.append(f"{name:<{width}}" + rates + f"{fraction(m.get('pr_ap50')):>8}"
                     f"{fraction(m.get('coco', {}).get('AR100')):>8}")
    return lines


def summary_table(metrics: dict) -> str:
    """A fixed-width table: detection rate at each reported k for the method and each baseline."""
    return "\n".join(rate_lines(method_rows(metrics)))


def print_summary(metrics: dict, out_dir: str | Path) -> None:
    out = Path(out_dir)
    print(f"\n{metrics['dataset']}: {metrics['num_images']} images, {metrics['num_objects']} objects; "
          f"detection rate (IoU >= 0.5) vs boxes per image, class-agnostic AP50 and COCO AR@100")
    print(summary_table(metrics))
    files = [out / name for name in ("report.md", "metrics.json", "detection_rate.png", "pr_curve.png", "val_pred.jpg")]
    print("report: " + ", ".join(str(f) for f in files if f.exists()))


def print_comparison(runs: dict[str, dict], out_dir: str | Path) -> None:
    """The `multibox compare` table and where its files are."""
    print("\n".join(rate_lines(runs)))
    print(f"report: {Path(out_dir) / 'compare.md'}, {Path(out_dir) / 'detection_rate.png'}")


def best_line(run_dir: Path) -> str:
    """What best.pt holds, from the run's log: its validation score and step, or the last weights."""
    log = run_dir / "log.jsonl"
    scored = [r for r in (read_log(log) if log.is_file() else []) if "val_score" in r]
    if not scored:
        return "the last weights (no validation images)"
    top = max(scored, key=lambda r: r["val_score"])
    return f"the best validation score, {top['val_score']:.3f} at step {top['step']}"


def print_run_files(run_dir: Path, data: str | None, kind: str = "localizer") -> None:
    """The end of `multibox train`: where each file of the run is, and the command to run next (a
    localizer's: evaluate; other networks are scored by `multibox paper` or `detect --classifier`)."""
    print(f"run folder {run_dir}:")
    if (run_dir / "best.pt").is_file():
        print(f"  best.pt       weights to ship: {best_line(run_dir)}")
    print("  last.pt       everything --resume needs (optimizer, step, RNG)")
    print("  results.csv   loss terms, learning rate, images/s and validation metrics by step (plotted: results.png)")
    print("  config.yaml   the resolved config; log.jsonl: the raw log")
    model = run_dir / ("best.pt" if (run_dir / "best.pt").is_file() else "last.pt")
    if kind == "classifier":
        print(f"next: multibox detect --model LOCALIZER --classifier {model} IMAGES")
    elif kind == "localizer":
        print(f"next: multibox evaluate --model {model}" + (f" --data {data}" if data else ""))
