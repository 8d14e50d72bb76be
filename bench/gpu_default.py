"""One GPU run of the default localizer (issue 21 item 3): the numbers a user of the default gets on a GPU.

    PYTHONPATH=src python3 bench/gpu_default.py [--device cuda] [--images 256] [--steps 300] [--json OUT]

Setting: the default configuration (EfficientNet-Lite0, conv head, cached features) on synthetic scenes
of 320 px (the GPU machine has no dataset; the scenes are rendered here, nothing is downloaded).

1. feature caching: the frozen backbone over every training image x view (mirror, rotations, scales);
   image passes/s and maps/s;
2. head steps/s on the cached windows (the default's training step), and images (windows)/s;
3. end to end, conv head trained with its backbone (train.cache_features off), AMP "auto" (bf16 where
   the GPU has it): images/s;
4. `multibox detect` over the scenes saved as PNG files: images/s end to end (decode, network, JSON,
   drawing);
5. GPU busy share during 2-4 (nvidia-smi utilization.gpu sampled every 0.2 s; "n/a" on the CPU).

``--tiny`` shrinks everything (tiny backbone, 64 px, a few images and steps) so that the CPU test
(tests/engine/test_gpu_default_script.py) runs these same code paths on every CI run. Prints a Markdown
table; every number is from this run on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # its GPU sampler is gpu_check's
from gpu_check import Utilisation  # noqa: E402

from multibox.cli import main as cli_main
from multibox.config import Config
from multibox.data.build import training_split
from multibox.engine.tasks import grid_localizer_task
from multibox.engine.trainer import train


def busy_share(util: Utilisation) -> str:
    """The mean GPU utilisation sampled while the block ran, or "n/a" without a GPU (no samples)."""
    return f"{util.mean_since(0.0):.0f} %" if util.samples else "n/a"


def config(args: argparse.Namespace, steps: int, cached: bool = True) -> Config:
    """The default configuration on synthetic scenes (``--tiny``: shrunk for the CPU test)."""
    cfg = Config()
    cfg.data.synthetic_sizes = {"train": args.images, "val": 4, "test": 4}
    cfg.data.synthetic_image_size = 64 if args.tiny else 320
    cfg.train.device, cfg.train.steps, cfg.train.log_every, cfg.train.cache_features = args.device, steps, 10, cached
    cfg.train.checkpoint_every = 10**6
    if args.tiny:
        cfg.model.backbone, cfg.model.image_size, cfg.model.stride, cfg.model.levels = "tiny", 64, 16, [16]
        cfg.model.conv_hidden, cfg.train.window_cells, cfg.data.cache_scales = 16, 4, [1.0]
    if not cached:
        cfg.train.batch_size = 8 if args.tiny else 32
    return cfg


def caching(args: argparse.Namespace) -> dict:
    """The feature cache's build time: image passes/s (one backbone batch of an image's views) and maps/s."""
    cfg = config(args, steps=1)
    cfg.train.steps = None  # cache every view, not only what a 1-step run needs
    dataset = training_split(cfg)
    start = time.perf_counter()
    task = grid_localizer_task(cfg, dataset, None)
    seconds = time.perf_counter() - start
    maps = len(task.samples.maps)
    return {"maps": maps, "maps_per_s": maps / seconds, "images_per_s": len(dataset) / seconds}


def steady_rate(run_dir: Path) -> float:
    """Mean images/s of a run's log lines after the first (warm-up) one."""
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in rows if "images_per_s" in r]
    steady = rates[1:] or rates
    return sum(steady) / len(steady)


def head_steps(args: argparse.Namespace, tmp: Path) -> dict:
    """The default's training: head steps on cached windows."""
    cfg = config(args, args.steps)
    with Utilisation() as busy:
        train(cfg, tmp / "head")
    rate = steady_rate(tmp / "head")
    return {"steps_per_s": rate / cfg.train.batch_size, "images_per_s": rate, "gpu_busy": busy_share(busy)}


def end_to_end(args: argparse.Namespace, tmp: Path) -> dict:
    """The conv head trained with its backbone (no cache), AMP auto."""
    cfg = config(args, max(20, args.steps // 5), cached=False)
    with Utilisation() as busy:
        train(cfg, tmp / "e2e")
    return {"images_per_s": steady_rate(tmp / "e2e"), "gpu_busy": busy_share(busy), "amp": cfg.train.amp}


def detect_rate(args: argparse.Namespace, tmp: Path) -> dict:
    """`multibox detect` over the training scenes saved as PNG files, end to end."""
    cfg = config(args, 1)
    folder = tmp / "scenes"
    folder.mkdir()
    dataset = training_split(cfg)
    for i in range(len(dataset)):
        dataset.load_image(i).save(folder / f"scene{i:04d}.png")
    command = ["detect", "--model", str(tmp / "head" / "last.pt"), str(folder), "--out", str(tmp / "detect"),
               "--device", args.device, "--top-k", "100"]
    with Utilisation() as busy:
        start = time.perf_counter()
        code = cli_main(command)
        seconds = time.perf_counter() - start
    if code:
        raise SystemExit(f"detect exited {code}")
    return {"images_per_s": len(dataset) / seconds, "gpu_busy": busy_share(busy)}


def table(results: dict) -> str:
    c, h, e, d = results["caching"], results["head"], results["end_to_end"], results["detect"]
    rows = [("feature caching", f"{c['images_per_s']:.1f} images/s ({c['maps_per_s']:.0f} maps/s, {c['maps']} maps)"),
            ("head steps (cached windows)", f"{h['steps_per_s']:.1f} steps/s ({h['images_per_s']:.0f} windows/s), GPU busy {h['gpu_busy']}"),
            (f"end to end, AMP {e['amp']}", f"{e['images_per_s']:.1f} images/s, GPU busy {e['gpu_busy']}"),
            ("multibox detect", f"{d['images_per_s']:.1f} images/s, GPU busy {d['gpu_busy']}")]
    return "\n".join(["| measurement | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=256, help="synthetic training scenes")
    parser.add_argument("--steps", type=int, default=300, help="head steps (end to end: a fifth of them)")
    parser.add_argument("--tiny", action="store_true", help="shrunk, for the CPU test")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
                   "torch": torch.__version__, "caching": caching(args), "head": head_steps(args, Path(tmp)),
                   "end_to_end": end_to_end(args, Path(tmp)), "detect": detect_rate(args, Path(tmp))}
    print(f"\n{results['device']}, torch {results['torch']}, {args.images} scenes, {args.steps} head steps\n")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
