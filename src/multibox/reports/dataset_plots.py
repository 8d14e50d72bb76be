"""The dataset picture: one PNG of what the boxes of a split look like, as Ultralytics' labels.jpg.

Six panels: objects per class, objects per image, box centres (x, y in [0, 1] of the image), box width
against height (fractions of the image), box aspect ratio (width / height in pixels, log scale) and box
size (sqrt of the area in pixels, log scale). Ignored objects count as objects, as ``data check`` counts
them. Written with matplotlib's Agg backend (no display), atomically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multibox.atomic import write_bytes_atomic
from multibox.data.dataset import DetectionDataset
from multibox.data.problems import printable

__all__ = ["DatasetStats", "dataset_stats", "dataset_figure", "write_dataset_plots", "DATASET_PNG"]

DATASET_PNG = "labels.png"  # its name in a run folder (Ultralytics calls it labels.jpg)


@dataclass
class DatasetStats:
    """What the picture shows, as numbers (the test compares them with the data).

    per_class int64 [C]; per_image int64 [I] (objects of each image); boxes float64 [M, 4] xyxy in [0, 1];
    pixel_wh float64 [M, 2] box width and height in pixels.
    """

    class_names: list[str]
    per_class: np.ndarray
    per_image: np.ndarray
    boxes: np.ndarray
    pixel_wh: np.ndarray


def dataset_stats(dataset: DetectionDataset) -> DatasetStats:
    """Counts and normalized boxes of every record of ``dataset`` (indexed, no pixel decoded)."""
    records = [r for r in dataset.records if min(r.width, r.height) > 0]
    labels = np.concatenate([r.labels for r in records] or [np.zeros(0, np.int64)]).astype(np.int64)
    pixel = [np.asarray(r.boxes, np.float64).reshape(-1, 4) for r in records]
    scale = [np.array([r.width, r.height, r.width, r.height], np.float64) for r in records]
    boxes = np.concatenate([b / s for b, s in zip(pixel, scale)] or [np.zeros((0, 4))])
    pixels = np.concatenate(pixel or [np.zeros((0, 4))])
    return DatasetStats(
        class_names=list(dataset.class_names),
        per_class=np.bincount(labels, minlength=len(dataset.class_names)),
        per_image=np.array([len(r.boxes) for r in records], np.int64),
        boxes=boxes,
        pixel_wh=pixels[:, 2:] - pixels[:, :2],
    )


def _class_panel(ax, stats: DatasetStats) -> None:
    ax.bar(range(len(stats.per_class)), stats.per_class, color="tab:blue")
    ax.set_xticks(range(len(stats.class_names)), stats.class_names, rotation=90 if len(stats.class_names) > 8 else 0,
                  fontsize=7)
    ax.set_ylabel("objects")
    ax.set_title(f"objects per class ({int(stats.per_class.sum())})")


def _image_panel(ax, stats: DatasetStats) -> None:
    top = int(stats.per_image.max()) if len(stats.per_image) else 0
    ax.hist(stats.per_image, bins=np.arange(top + 2) - 0.5 if top <= 50 else 50, color="tab:blue")
    ax.set_xlabel("objects in the image")
    ax.set_ylabel("images")
    ax.set_title(f"objects per image ({len(stats.per_image)} images)")


SCATTER_MAX = 20_000  # boxes drawn as dots up to this many; a 2-D histogram beyond (dots would only smear)


def _square_panel(ax, x: np.ndarray, y: np.ndarray, labels: tuple[str, str], title: str) -> None:
    if len(x) <= SCATTER_MAX:
        ax.scatter(x, y, s=4, alpha=max(0.05, min(0.6, 200 / max(len(x), 1))), color="tab:blue", linewidths=0)
    else:
        ax.hist2d(x, y, bins=100, range=[[0, 1], [0, 1]], cmap="Blues", cmin=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)


def _log_panel(ax, values: np.ndarray, label: str, title: str) -> None:
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    values = values[np.isfinite(values) & (values > 0)]
    if len(values):
        lo, hi = values.min(), values.max()
        ax.hist(values, bins=np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 2, 40), color="tab:blue")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)
    ax.set_ylabel("objects")
    ax.set_title(title)


def dataset_figure(stats: DatasetStats, title: str):
    """The matplotlib Figure of the six panels (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    centre = (stats.boxes[:, :2] + stats.boxes[:, 2:]) / 2
    size = stats.boxes[:, 2:] - stats.boxes[:, :2]
    _class_panel(axes[0, 0], stats)
    _image_panel(axes[0, 1], stats)
    _square_panel(axes[0, 2], centre[:, 0], 1 - centre[:, 1], ("x centre", "y centre (up)"), "box centres")
    _square_panel(axes[1, 0], size[:, 0], size[:, 1], ("width / image width", "height / image height"),
                  "box width and height")
    w, h = stats.pixel_wh[:, 0], stats.pixel_wh[:, 1]
    _log_panel(axes[1, 1], w / np.maximum(h, 1e-9), "width / height", "box aspect ratio")
    _log_panel(axes[1, 2], np.sqrt(np.maximum(w * h, 0)), "sqrt(area), pixels", "box size")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_dataset_plots(dataset: DetectionDataset, path: str | Path) -> DatasetStats:
    """Draw ``dataset``'s picture to ``path`` (PNG); returns the numbers drawn."""
    import matplotlib.pyplot as plt

    stats = dataset_stats(dataset)
    fig = dataset_figure(stats, printable(f"{dataset.name}: {len(dataset)} images, {len(stats.boxes)} objects"))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return stats
