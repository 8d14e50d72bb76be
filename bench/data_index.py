"""Benchmark: index a COCO-style JSON of 1 M annotations, then re-load it from the index cache.

    PYTHONPATH=src python bench/data_index.py [--images 120000] [--annotations 1000000] [--probe-sample 2000]

Each step runs in its own Python process so its peak RSS (``ru_maxrss``) is its own: the generator's
memory does not count against the reader. The JSON has COCO's shape, including an 8-point polygon
``segmentation`` per annotation (the bulk of a real instances file), and sits in a temporary folder.
Image files are not generated, so indexing runs with ``probe_images=False`` (sizes from the JSON);
``--probe-sample N`` separately times reading N real JPEG headers, the per-image cost probing adds.
Targets (issue 3): indexing within a few minutes and under 2 GB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def generate(path: Path, num_images: int, num_annotations: int, seed: int = 0) -> None:
    """Stream a COCO instances JSON to ``path`` without holding it in memory."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([(640, 480), (480, 640), (640, 427), (500, 375)], num_images)
    image_of = np.sort(rng.integers(0, num_images, num_annotations))
    with open(path, "w") as f:
        f.write('{"info": {"description": "synthetic benchmark"}, "images": [')
        for i, (w, h) in enumerate(sizes):
            f.write(
                ("," if i else "") + f'{{"id": {i + 1}, "file_name": "{i + 1:012d}.jpg", "width": {w}, "height": {h}}}'
            )
        f.write('], "annotations": [')
        _write_annotations(f, rng, image_of, sizes)
        cats = ",".join(f'{{"id": {c}, "name": "class{c}", "supercategory": "x"}}' for c in range(1, 81))
        f.write(f'], "categories": [{cats}]}}')


def _write_annotations(
    f, rng: np.random.Generator, image_of: np.ndarray, sizes: np.ndarray, chunk: int = 100_000
) -> None:
    for start in range(0, len(image_of), chunk):
        ids = image_of[start : start + chunk]
        wh = sizes[ids].astype(np.float64)
        xy = rng.uniform(0, 0.8, (len(ids), 2)) * wh
        bwh = rng.uniform(0.02, 0.2, (len(ids), 2)) * wh
        cats = rng.integers(1, 81, len(ids))
        rows = []
        for k in range(len(ids)):
            x, y, w, h = (round(v, 2) for v in (*xy[k], *bwh[k]))
            polygon = f"[{x}, {y}, {x + w}, {y}, {x + w}, {y + h}, {x}, {y + h}, {x}, {y + 1}, {x + 1}, {y}, {x}, {y}, {x + 1}, {y + 1}]"
            rows.append(
                f'{{"id": {start + k + 1}, "image_id": {ids[k] + 1}, "category_id": {cats[k]}, "iscrowd": 0, '
                f'"area": {round(w * h, 2)}, "bbox": [{x}, {y}, {w}, {h}], "segmentation": [{polygon}]}}'
            )
        f.write(("," if start else "") + ",".join(rows))


def index(json_path: Path, image_dir: Path, cache_dir: Path) -> dict:
    """Build (or load from cache) the dataset; report time, size and peak RSS of this process."""
    from multibox.data.coco import COCODataset  # imports torch (boxes), a fixed few hundred MB
    from multibox.data.problems import ProblemLog

    baseline = _peak_rss_mb()

    start = time.perf_counter()
    dataset = COCODataset(json_path, image_dir, probe_images=False, cache_dir=cache_dir, problems=ProblemLog(echo=None))
    elapsed = time.perf_counter() - start
    return {
        "seconds": round(elapsed, 2),
        "from_cache": dataset.from_cache,
        "images": len(dataset),
        "objects": dataset.num_objects(include_ignored=True),
        "problems": dataset.problems.total,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_mb": round(baseline, 1),
    }


def probe_sample(folder: Path, count: int) -> dict:
    """Seconds per image to read the headers of ``count`` freshly written 640x480 JPEGs."""
    from PIL import Image

    from multibox.data.images import probe_image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    paths = [folder / f"{k}.jpg" for k in range(count)]
    for path in paths:
        Image.fromarray(pixels).save(path, quality=85)
    start = time.perf_counter()
    for path in paths:
        probe_image(path)
    per_image = (time.perf_counter() - start) / count
    return {"probe_ms_per_image": round(per_image * 1000, 3), "projected_120k_s": round(per_image * 120_000, 1)}


def _child(*args: str) -> dict:
    command = [sys.executable, __file__, *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120_000)
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--probe-sample", type=int, default=2000, help="JPEG headers to time (0: skip)")
    parser.add_argument("--step", choices=["generate", "index", "probe"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        _run_step(args)
        return
    with tempfile.TemporaryDirectory(prefix="multibox-bench-") as tmp:
        _run_all(Path(tmp), args)


def _run_step(args) -> None:
    json_path, images, cache = args.dir / "instances_bench.json", args.dir / "images", args.dir / "cache"
    if args.step == "generate":
        start = time.perf_counter()
        generate(json_path, args.images, args.annotations)
        print(
            json.dumps(
                {"seconds": round(time.perf_counter() - start, 1), "mb": round(json_path.stat().st_size / 2**20, 1)}
            )
        )
    elif args.step == "index":
        print(json.dumps(index(json_path, images, cache)))
    else:
        print(json.dumps(probe_sample(images, args.probe_sample)))


def _run_all(tmp: Path, args) -> None:
    (tmp / "images").mkdir()
    sizes = ["--images", str(args.images), "--annotations", str(args.annotations), "--dir", str(tmp)]
    made = _child("--step", "generate", *sizes)
    print(
        f"generated {args.images:,} images / {args.annotations:,} annotations: {made['mb']} MB JSON in {made['seconds']} s"
    )
    for label in ("index (parse JSON, validate, group, write cache)", "re-load from the index cache"):
        r = _child("--step", "index", *sizes)
        print(
            f"{label}: {r['seconds']} s, {r['images']:,} images, {r['objects']:,} objects, "
            f"peak RSS {r['peak_rss_mb']} MB ({r['rss_before_mb']} MB of it after imports, before indexing), from_cache={r['from_cache']}"
        )
    if args.probe_sample:
        r = _child("--step", "probe", "--probe-sample", str(args.probe_sample), *sizes)
        print(
            f"image header probing (probe_images=True): {r['probe_ms_per_image']} ms/image, "
            f"~{r['projected_120k_s']} s for 120k images (warm page cache)"
        )


if __name__ == "__main__":
    main()
