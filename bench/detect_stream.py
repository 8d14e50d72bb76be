"""`multibox detect` end to end against the model alone, and its memory against the number of images
(issue 19's acceptance: detect >= 80 % of the model-only images/s on 200 tiles; peak RSS <= 1.5 GB and
flat from 50 to 500 images). Not a timed test: the ratio within one run is what counts.

The tiles are trees-dev's 400 px JPEGs copied to as many files as asked. Each row runs in a fresh process:

* ``model only``: the images decoded beforehand, then ``predict_batch`` in batches of ``--batch`` (the
  calls detect makes), timed: the network's ceiling for detect (an .onnx in ONNX Runtime on both sides);
* ``detect``: :func:`multibox.jobs.detect.detect` end to end (decoding, network, JSONL, detections.json;
  drawings with --save), timed from the call, the model's loading included;
* ``detect --no-save`` at 50 and 500 images: the process's peak RSS.

    python bench/detect_stream.py RUN/best.pt [--tiles 200] [--batch 1] [--counts 50,500]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TILES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trees-dev" / "JPEGImages"


def tile_folder(root: Path, count: int) -> Path:
    """``count`` copies of the trees-dev tiles in ROOT/tilesCOUNT."""
    sources = sorted(TILES.glob("*.jpg"))
    folder = root / f"tiles{count}"
    folder.mkdir()
    for i in range(count):
        shutil.copyfile(sources[i % len(sources)], folder / f"{i:04d}.jpg")
    return folder


def child(kind: str, model: str, folder: str, out: str, batch: int) -> dict:
    """One measurement in this process: images/s and peak RSS (MB)."""
    from multibox.inference.loading import is_onnx

    files = sorted(Path(folder).glob("*.jpg"))
    runtime = "onnxruntime" if is_onnx(model) else "torch"  # detect's default for an .onnx
    if kind == "model":
        from multibox.data.images import open_image
        from multibox.inference.loading import load_localizer

        localizer = load_localizer(model, "cpu")
        images = [open_image(p) for p in files]
        localizer.predict_batch(images[:batch], top_k=100)  # warm-up
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            localizer.predict_batch(images[i : i + batch], top_k=100)
        seconds = time.perf_counter() - start
    else:
        from multibox.jobs.detect import detect

        start = time.perf_counter()
        detect(model, [folder], out, top_k=100, device="cpu", batch_size=batch, draw=kind == "detect-save")
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "images": len(files), "images_per_s": len(files) / seconds, "peak_rss_mb": peak_mb,
            "runtime": runtime}


def measure(kind: str, model: str, folder: Path, out: Path, batch: int) -> dict:
    """:func:`child` in a fresh Python process."""
    done = subprocess.run([sys.executable, __file__, "--child", kind, model, str(folder), str(out), str(batch)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1, help="images per network run (detect's default on a CPU)")
    parser.add_argument("--counts", default="50,500", help="image counts of the peak-RSS rows")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, model, folder, out, batch = args.child
        print(json.dumps(child(kind, model, folder, out, int(batch))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = tile_folder(root, args.tiles)
        rows = [measure(kind, args.model, folder, root / kind, args.batch)
                for kind in ("model", "detect", "detect-save")]
        for count in map(int, args.counts.split(",")):
            rows.append(measure("detect", args.model, tile_folder(root, count), root / f"rss{count}", args.batch))
    ceiling = rows[0]["images_per_s"]
    print(f"{'run':<28} {'images':>6} {'images/s':>9} {'of model':>9} {'peak RSS':>9}")
    for row in rows:
        name = {"model": "model only (predict_batch)", "detect": "detect --no-save",
                "detect-save": "detect (drawings)"}[row["kind"]]
        print(f"{name:<28} {row['images']:>6} {row['images_per_s']:>9.2f} {row['images_per_s'] / ceiling:>8.0%} "
              f"{row['peak_rss_mb']:>6.0f} MB")


if __name__ == "__main__":
    main()
