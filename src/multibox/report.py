"""Short human-readable summaries printed at the end of `evaluate` and `demo`."""

from __future__ import annotations

from pathlib import Path


def summary_table(metrics: dict) -> str:
    """A fixed-width table: detection rate at each reported k for the model and each baseline."""
    rows = {"DeepMultiBox": metrics["detection_rate"]}
    rows |= {f"{name} baseline": b["detection_rate"] for name, b in metrics.get("baselines", {}).items()}
    ks = list(metrics["detection_rate"])
    lines = [f"{'boxes per image':<22}" + "".join(f"{k:>8}" for k in ks)]
    for name, rates in rows.items():
        lines.append(f"{name:<22}" + "".join(f"{100 * rates[k]:>7.1f}%" for k in ks))
    return "\n".join(lines)


def print_summary(metrics: dict, out_dir: str | Path) -> None:
    print(f"\n{metrics['dataset']}: {metrics['num_images']} images, {metrics['num_objects']} objects; "
          f"detection rate (IoU >= 0.5) vs boxes per image")
    print(summary_table(metrics))
    print(f"report: {Path(out_dir) / 'metrics.json'}, {Path(out_dir) / 'detection_rate.png'}")
