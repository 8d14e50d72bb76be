"""Quality benchmark: what each configuration finds after the same CPU budget, on real and synthetic data.

Rows: the paper preset, the new default, and the ablations that justify the default (fc head vs conv
head, priors from one crop per image vs from every box, input size, cached features on / off). Each is
trained with `multibox train`'s code for ``--minutes`` of wall-clock time (set-up, e.g. caching features,
included) and evaluated like `multibox evaluate`: detection rate at 10 / 25 / 100 boxes per image,
COCO AR@100 (class-agnostic), training images/s (cached-feature windows/s for the cached head), and
inference images/s (whole-image localizer, batch 1, fastest of 3 passes over the evaluated images).

Datasets: ../shared/data/trees-dev (train -> val; 8 aerial tiles, 61 val objects: one object is 1.6
points) and the embedded synthetic scenes (train -> test). Not a timed test: numbers move with the
machine's load; the table names the machine.

    PYTHONPATH=src python bench/quality.py [--minutes 4] [--seeds 0] [--only trees] [--out docs/quality_table.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from measure import machine  # noqa: E402
from multibox.config import Config  # noqa: E402
from multibox.data.build import load_split  # noqa: E402
from multibox.engine import tasks  # noqa: E402
from multibox.engine.trainer import train  # noqa: E402
from multibox.errors import UserError  # noqa: E402
from multibox.inference.localizer import Localizer  # noqa: E402
from multibox.jobs.evaluate import evaluate  # noqa: E402

TREES = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trees-dev")
DATASETS = {"trees": (TREES, "val"), "synthetic": ("synthetic", "test")}

# name -> (preset, overrides "section.field": value); "old_priors" fits fc priors on one crop per image.
CONFIGS = {
    "paper preset (AlexNet, fc head, 220 px, center square, Adagrad)": ("paper", {}),
    "default (conv head, EfficientNet-Lite0, cached features)": ("default", {}),
    "fc head (Lite0, 220 px, end to end)": ("default", {"model.head": "fc", "model.image_size": 220,
                                                        "train.cache_features": False}),
    "fc head, priors from one crop per image (before)": ("default", {"model.head": "fc", "model.image_size": 220,
                                                                    "train.cache_features": False, "old_priors": True}),
    "conv head, half the input size": ("default", {"half_size": True}),
    "conv head, no cached features (Lite0 end to end)": ("default", {"train.cache_features": False}),
}


def config(data: str, preset: str, overrides: dict, minutes: float, seed: int) -> Config:
    cfg = Config.preset(preset)
    cfg.data.data, cfg.train.time_minutes, cfg.train.seed, cfg.train.device = data, minutes, seed, "cpu"
    cfg.train.checkpoint_every = 10**9  # one checkpoint, at the end
    for key, value in overrides.items():
        if "." in key:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, value)
    if overrides.get("half_size"):
        cfg.model.image_size = max(64, tasks.auto_image_size(load_split(cfg, "train")) // 64 * 32)
    return cfg


def train_rate(run: Path) -> float:
    """Mean images (or windows) per second of the run's log lines."""
    rates = [r["images_per_s"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "images_per_s" in r]
    return sum(rates) / max(len(rates), 1)


def inference_rate(model_path: Path, data: str, split: str, cfg: Config) -> float:
    """Images/s of the whole-image localizer at batch 1 over the evaluated split (fastest of 3)."""
    loc = Localizer.from_checkpoint(model_path, "cpu")
    dataset = load_split(cfg, split)
    images = [dataset.load_image(i) for i in range(min(len(dataset), 20))]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for image in images:
            loc.predict(image, top_k=100)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def run_one(name: str, dataset: str, minutes: float, seed: int, work: Path) -> dict:
    data, split = DATASETS[dataset]
    preset, overrides = CONFIGS[name]
    cfg = config(data, preset, overrides, minutes, seed)
    old = tasks.PRIOR_CROPS
    if overrides.get("old_priors"):
        tasks.PRIOR_CROPS = 1  # one crop per image: the priors before this benchmark's issue
    out = work / f"{dataset}-{abs(hash(name))}-{seed}"
    try:
        path = train(cfg, out)
    finally:
        tasks.PRIOR_CROPS = old
    m = evaluate(path, out / "eval", data, split, "cpu", baselines="none")
    rates = m["detection_rate"]
    return {"config": name, "dataset": dataset, "seed": seed, "dr10": rates.get("10"), "dr25": rates.get("25"),
            "dr100": rates.get("100"), "ar100": m["coco"]["AR100"], "train_rate": train_rate(out),
            "infer_rate": inference_rate(path, data, split, cfg)}


def table(rows: list[dict]) -> str:
    lines = ["| data | configuration | seed | DR@10 | DR@25 | DR@100 | AR@100 | train img/s | infer img/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['config']} | {r['seed']} | {100 * r['dr10']:.1f} | {100 * r['dr25']:.1f} | "
                     f"{100 * r['dr100']:.1f} | {r['ar100']:.3f} | {r['train_rate']:.0f} | {r['infer_rate']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget of each configuration")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--only", choices=list(DATASETS), action="append", help="only these datasets")
    parser.add_argument("--configs", help="comma-separated row numbers (1-based) of CONFIGS to run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=str(Path(__file__).parent / "quality_results.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = list(CONFIGS)
    if args.configs:
        names = [names[int(i) - 1] for i in args.configs.split(",")]
    rows, failed = [], []
    with tempfile.TemporaryDirectory() as work:
        for dataset in args.only or list(DATASETS):
            for name in names:
                for seed in map(int, args.seeds.split(",")):
                    try:
                        rows.append(run_one(name, dataset, args.minutes, seed, Path(work)))
                    except UserError as exc:  # e.g. the old priors: fewer distinct boxes than K
                        print(f"| {dataset} | {name} | {seed} | did not train: {exc} |", flush=True)
                        failed.append(f"{dataset}, {name}: {exc}")
                        continue
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = (f"# Quality (`make quality`)\n\nMachine: {machine(args.threads)}. Budget: {args.minutes:g} min of training "
            f"per configuration (set-up included), then `multibox evaluate`.\n\n{table(rows)}\n"
            + "".join(f"\nDid not train: {f}\n" for f in failed))
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
