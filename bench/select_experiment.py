"""Does `multibox select` pick images worth labelling? Chosen vs random on trees-dev (issue 20 item 3).

For each seed: 2 tiles of trees-dev's ``train`` split (8 tiles) are the labelled start, the other 6 the
unlabelled pool. A model trained on the 2 ranks the pool with `multibox select`'s code
(:func:`multibox.jobs.select.select_images`, ``--by`` disagreement by default); 2 tiles are added
either as chosen (the top 2) or at random (the seed's draw from the pool), a model is trained from
scratch on each set of 4 with the same config and seed, and both are scored like `multibox evaluate`
on ``val`` (the same photo) and ``val_sites`` (other sites). Nothing is tuned on val: the runs keep their
last weights (no best.pt choice) and no calibration.

The table prints, per seed, the tiles added and the detection rate at 10 / 25 / 100 boxes on both
splits, then the mean over seeds of chosen minus random. The splits live in a scratch VOC folder of
symlinks (the shared data is only read).

    PYTHONPATH=src nice -n 10 python bench/select_experiment.py --seeds 0,1,2 --steps 300
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from multibox.config import Config
from multibox.engine.trainer import train
from multibox.jobs.evaluate import evaluate
from multibox.jobs.select import select_images

TREES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trees-dev"
VAL_SPLITS = ("val", "val_sites")
KS = ("10", "25", "100")


def scratch_voc(work: Path) -> Path:
    """A VOC root of symlinks to trees-dev's files, whose ImageSets/Main the experiment writes."""
    root = work / "trees"
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for name in ("Annotations", "JPEGImages"):
        if not (root / name).exists():
            (root / name).symlink_to(TREES / name)
    for split in VAL_SPLITS:
        ids = (TREES / "ImageSets" / "Main" / f"{split}.txt").read_text()
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(ids)
    return root


def write_split(root: Path, name: str, ids: list[str]) -> str:
    (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return name


def config(root: Path, split: str, seed: int, steps: int, backbone: str | None) -> Config:
    cfg = Config.preset("default")
    cfg.data.data, cfg.data.split, cfg.train.seed, cfg.train.device = str(root), split, seed, "cpu"
    cfg.data.val_split, cfg.data.holdout = "none", 0.0  # no best.pt choice on val: the last weights are scored
    cfg.train.steps = steps
    cfg.model.backbone = backbone or cfg.model.backbone
    return cfg


def train_and_score(root: Path, split: str, seed: int, args: argparse.Namespace, work: Path) -> tuple[Path, dict]:
    out = work / f"{split}"
    path = train(config(root, split, seed, args.steps, args.backbone), out)
    rates = {}
    for val in VAL_SPLITS:
        m = evaluate(path, out / f"eval-{val}", str(root), val, "cpu", baselines="none")
        rates[val] = {k: m["detection_rate"][k] for k in KS}
    return path, rates


def one_seed(seed: int, train_ids: list[str], root: Path, args: argparse.Namespace, work: Path) -> dict:
    rng = np.random.default_rng(seed)
    start = sorted(rng.choice(train_ids, 2, replace=False).tolist())
    pool = [i for i in train_ids if i not in start]
    randomly = sorted(rng.choice(pool, 2, replace=False).tolist())
    start_model, start_rates = train_and_score(root, write_split(root, f"start{seed}", start), seed, args, work)
    doc = select_images(start_model, [str(root / "JPEGImages" / f"{i}.jpg") for i in pool], work / f"select{seed}",
                        n=2, by=args.by, device="cpu")
    chosen = sorted(Path(p).stem for p in doc["top"])
    _, chosen_rates = train_and_score(root, write_split(root, f"chosen{seed}", start + chosen), seed, args, work)
    _, random_rates = train_and_score(root, write_split(root, f"random{seed}", start + randomly), seed, args, work)
    return {"seed": seed, "start": start, "chosen": chosen, "random": randomly, "start_rates": start_rates,
            "chosen_rates": chosen_rates, "random_rates": random_rates}


def short(tile: str) -> str:
    return tile.replace("2019_YELL_2_541000_4977000_image_", "YELL ")


def rates_text(rates: dict) -> str:
    return "  ".join("/".join(f"{100 * rates[v][k]:5.1f}" for k in KS) for v in VAL_SPLITS)


HEAD = f"{'seed':>4}  {'set':<7} {'tiles added':<40} {'val DR@10/25/100':<18}  val_sites DR@10/25/100"


def seed_lines(row: dict) -> list[str]:
    """The start, chosen and random rows of one seed."""
    start = ", ".join(map(short, row["start"]))
    lines = [f"{row['seed']:>4}  {'start':<7} {start:<40} {rates_text(row['start_rates'])}"]
    for kind in ("chosen", "random"):
        added = ", ".join(map(short, row[kind]))
        lines.append(f"{'':>4}  {kind:<7} {added:<40} {rates_text(row[kind + '_rates'])}")
    return lines


def table(rows: list[dict]) -> str:
    """Every seed's rows, then chosen - random per split: the mean and [min, max] over seeds."""
    lines = [HEAD] + [line for row in rows for line in seed_lines(row)]
    for val in VAL_SPLITS:
        diffs = {k: [100 * (r["chosen_rates"][val][k] - r["random_rates"][val][k]) for r in rows] for k in KS}
        same = sum(r["chosen"] == r["random"] for r in rows)
        lines.append(f"chosen - random on {val}, mean over {len(rows)} seed(s) (points): "
                     + ", ".join(f"DR@{k} {statistics.mean(d):+.1f} [{min(d):+.1f}, {max(d):+.1f}]"
                                 for k, d in diffs.items()) + f"; seeds where both added the same tiles: {same}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=300, help="training steps of every model (default 300)")
    parser.add_argument("--backbone", help="default: the library's")
    parser.add_argument("--by", default="disagreement", choices=("disagreement", "uncertainty"))
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    train_ids = (TREES / "ImageSets" / "Main" / "train.txt").read_text().split()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        root = scratch_voc(work)
        rows = []
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(one_seed(seed, train_ids, root, args, work / f"seed{seed}"))
            print("\n".join([HEAD, *seed_lines(rows[-1])]), file=sys.stderr, flush=True)  # kept if stopped later
        print(f"select experiment: trees-dev, {args.steps} steps per model, --by {args.by}, "
              f"backbone {args.backbone or Config.preset('default').model.backbone}")
        print(table(rows))


if __name__ == "__main__":
    main()
