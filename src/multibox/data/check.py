"""What is in a dataset and what is wrong with it: the report of ``multibox data check``
(:mod:`multibox.jobs.data`).

``multibox data check`` indexes the split, decodes every image (so corrupt files are found now, not mid-training),
prints counts, per-class totals, text histograms of box size and aspect ratio, the coverage buckets of a
few §4.1 crops per image, and the problems -- one line per kind, its count and the first (every one with
``--verbose``), as training prints them. Exit code:
0 usable, 1 problems found (the rest is still usable), 2 unreadable (no dataset, or no usable image).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from multibox.data.build import build_dataset
from multibox.data.crops import BUCKETS, CoverageCropSampler, bucket_of, coverage_grid, crop_coverage
from multibox.data.dataset import DetectionDataset
from multibox.data.problems import BadImage, ProblemLog, printable

__all__ = ["open_for_check", "load_all", "report", "histogram", "coverage_counts"]

_SIZE_EDGES = [16, 32, 64, 128, 256, 512]  # sqrt(box area), pixels
_ASPECT_EDGES = [1 / 4, 1 / 2, 1, 2, 4]  # width / height
_BAR = 40


def open_for_check(data: str, split: str, log: ProblemLog, **options) -> DetectionDataset:
    if data == "synthetic":
        return build_dataset(data, split, **options)
    return build_dataset(data, split, problems=log, **options)


def _edge_label(edges: list[float], k: int, fmt) -> str:
    if k == 0:
        return f"< {fmt(edges[0])}"
    if k == len(edges):
        return f">= {fmt(edges[-1])}"
    return f"{fmt(edges[k - 1])}-{fmt(edges[k])}"


def histogram(values: np.ndarray, edges: list[float], fmt=lambda v: f"{v:g}") -> list[str]:
    """Text histogram lines (label, bar, count) of ``values`` [V] in the bins ``edges`` make."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    peak = max(int(counts.max()), 1)
    return [
        f"  {_edge_label(edges, k, fmt):>11} {'#' * round(_BAR * int(c) / peak):<{_BAR}} {int(c)}"
        for k, c in enumerate(counts)
    ]


def _ratio(v: float) -> str:
    return f"1/{round(1 / v)}" if v < 1 else f"{v:g}"


def coverage_counts(
    dataset: DetectionDataset, crops_per_image: int, seed: int
) -> tuple[np.ndarray, CoverageCropSampler]:
    """int64 [4]: how many of ``crops_per_image`` sampled crops per image fall in each coverage bucket."""
    sampler, counts = CoverageCropSampler(), np.zeros(len(BUCKETS), np.int64)
    rng = np.random.default_rng(seed)
    for record in dataset.records:
        if min(record.width, record.height) <= 0:
            continue
        grid = coverage_grid(record.boxes, record.width, record.height)
        crops = np.stack([sampler(rng, record, i) for i in range(crops_per_image)])
        counts += np.bincount(bucket_of(crop_coverage(grid, crops)), minlength=len(BUCKETS))
    return counts, sampler


def load_all(dataset: DetectionDataset, log: ProblemLog) -> int:
    """Decode every image (at a small draft size); report failures. Returns how many failed."""
    failed = 0
    for i in tqdm(range(len(dataset)), desc="decoding images", unit="img", dynamic_ncols=True):  # stderr; the report is stdout
        try:
            if hasattr(dataset, "max_pixels"):
                dataset.load_image(i, target_size=(64, 64))
            else:
                dataset.load_image(i)
        except BadImage as error:
            log.report(error.problem)
            failed += 1
    return failed


def _class_lines(dataset: DetectionDataset) -> list[str]:
    labels = np.concatenate([r.labels for r in dataset.records] or [np.zeros(0, np.int64)])
    ignore = np.concatenate([r.ignore for r in dataset.records] or [np.zeros(0, bool)])
    k = len(dataset.class_names)
    total = np.bincount(labels, minlength=k)
    ignored = np.bincount(labels[ignore], minlength=k)
    width = max([len(n) for n in dataset.class_names] + [5])
    return [
        f"  {n:<{width}} {int(t):>8}" + (f"  (ignored {int(g)})" if g else "")
        for n, t, g in zip(dataset.class_names, total, ignored)
    ]


def _box_lines(dataset: DetectionDataset) -> list[str]:
    boxes = np.concatenate([r.boxes for r in dataset.records] or [np.zeros((0, 4), np.float32)]).astype(np.float64)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    lines = ["box size, sqrt(area) in pixels:"] + histogram(np.sqrt(w * h), _SIZE_EDGES)
    return lines + ["box aspect ratio, width/height:"] + histogram(w / np.maximum(h, 1e-9), _ASPECT_EDGES, _ratio)


def _coverage_lines(dataset: DetectionDataset, crops_per_image: int, seed: int) -> list[str]:
    counts, sampler = coverage_counts(dataset, crops_per_image, seed)
    names = [f"{int(lo * 100)}-{int(hi * 100)}%" for lo, hi in BUCKETS]
    head = f"coverage of {crops_per_image} sampled crops per image (seed {seed}), by §4.1 bucket:"
    body = [f"  {n:>8} {int(c):>8}" for n, c in zip(names, counts)]
    moved = int(sampler.redistributed.sum())
    return [head, *body, f"  {moved} crop(s) moved to the nearest feasible bucket (bucket impossible for the image)"]


def report(dataset: DetectionDataset, crops_per_image: int, seed: int, negatives: int) -> list[str]:
    head = (
        f"dataset {dataset.name}: {len(dataset)} images ({negatives} without objects), "
        f"{dataset.num_objects(include_ignored=True)} objects ({dataset.num_objects(include_ignored=True) - dataset.num_objects()} ignored), "
        f"{len(dataset.class_names)} classes"
    )
    return [
        printable(head),
        "objects per class:",
        *_class_lines(dataset),
        *_box_lines(dataset),
        *_coverage_lines(dataset, crops_per_image, seed),
    ]
