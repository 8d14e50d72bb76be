"""Benchmark of the loaders' safety checks (docs/reliability.md): what refusing a YAML alias bomb and
reading the pickle-free index cache cost.

    PYTHONPATH=src python bench/reliability.py [--images 200000] [--boxes 1000000]

Prints one line per measurement, each the fastest of 3 runs (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from multibox.data.index_cache import IndexData, load_or_build
from multibox.errors import UserError
from multibox.yaml_files import parse_yaml


def yaml_bomb(levels: int = 9) -> str:
    """ "Billion laughs" in YAML: each level a list of 9 aliases of the previous one (9^levels leaves)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def fastest(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def refuse_bomb() -> None:
    try:
        parse_yaml(yaml_bomb(), "bomb.yaml")
    except UserError:
        return
    raise AssertionError("the alias bomb was not refused")


def synthetic_index(num_images: int, num_boxes: int) -> IndexData:
    rng = np.random.default_rng(0)
    counts = rng.multinomial(num_boxes, np.ones(num_images) / num_images)
    return IndexData(["object"], [f"img{i:07d}" for i in range(num_images)],
                     [f"/data/images/train/img{i:07d}.jpg" for i in range(num_images)],
                     np.full(num_images, 640), np.full(num_images, 480),
                     np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                     rng.random((num_boxes, 4), dtype=np.float32), np.zeros(num_boxes, np.int64),
                     np.zeros(num_boxes, bool))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--boxes", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"YAML alias bomb (9 levels, 9^9 leaves) refused in {1000 * fastest(refuse_bomb):.1f} ms")
    plain = yaml.safe_load(yaml_bomb(6))  # what a plain SafeLoader hands on: fast to load, huge to walk
    walk = fastest(lambda: json.dumps(plain), repeats=1)
    print(f"without the bound: json.dumps of a 6-level bomb (9^6 leaves) takes {walk:.2f} s; each level x9")
    index = synthetic_index(args.images, args.boxes)
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder) / "index.npz"
        def write_once() -> None:
            cache.unlink(missing_ok=True)
            load_or_build(cache, "key", lambda: index)

        write = fastest(write_once)
        read = fastest(lambda: load_or_build(cache, "key", lambda: index))
        assert load_or_build(cache, "key", lambda: index)[1], "the cache was not used"
        size = cache.stat().st_size / 1e6
    print(f"index cache of {args.images:,} images / {args.boxes:,} boxes (.npz + JSON, {size:.1f} MB): "
          f"write {write:.2f} s, read {read:.2f} s")


if __name__ == "__main__":
    main()
