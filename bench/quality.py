"""Quality protocol: what a configuration finds on the photo it was trained on *and* on the next one.

Every configuration is trained with `multibox train`'s code and scored like `multibox evaluate` on two
questions of ../shared/data/trees-dev, several seeds each:

* ``same``:  train -> val        (val is cut from the same photo as train: how well it learns a photo)
* ``sites``: train_yell -> val_sites (other sites, dates and light: what a user's *next* photo gets)

Each run appends one JSON line to ``--results`` (a run already there is not repeated, so the protocol
can be stopped and resumed), then the table prints the mean and the spread (min-max) over seeds of the
detection rate at 10 / 25 / 100 boxes, the class-agnostic AP50 and AR@100, the training wall time and the
whole-image inference rate (batch 1). The default is chosen by both columns, never by ``same`` alone.
Runs are stopped by the run length (no time budget), so a loaded machine changes the times, not the
detection rates. Not a timed test: the table names the machine.

    PYTHONPATH=src python bench/quality.py --configs "before|default" --seeds 0,1,2 [--protocols sites,same]
    PYTHONPATH=src python bench/quality.py --table            # the table of every recorded run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from measure import machine  # noqa: E402
from multibox.config import Config  # noqa: E402
from multibox.engine.trainer import train  # noqa: E402
from multibox.inference.localizer import Localizer  # noqa: E402
from multibox.jobs.evaluate import evaluate  # noqa: E402

TREES = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trees-dev")
PROTOCOLS = {"same": ("train", "val"), "sites": ("train_yell", "val_sites")}

# name -> (preset, {"section.field": value}); each row of the ablation table. "default" is the library's
# default as it is now; the others change one thing (or say what they add) relative to the defaults
# they were measured against (docs/quality.md keeps the history).
OLD_LOSS = {"train.box_loss": "image", "train.positive_iou": None, "train.alpha": 0.3}
# Rows measured with NMS at the paper's 0.5 (before model.nms_iou came from the training boxes) keep it.
NMS05 = {"model.nms_iou": 0.5}
# Rows measured when a third of the jittered views were grey (before half were) keep that, and NMS 0.5.
GRAY03 = NMS05 | {"data.cache_gray": 0.3}
# Rows measured before the head's input dropout (model.feature_dropout) keep it off.
NO_DROPOUT = GRAY03 | {"model.feature_dropout": 0.0}
BEFORE = NO_DROPOUT | OLD_LOSS | {"data.cache_jitter": 0.0, "model.conv_head": "dense", "model.image_size": None, "model.stride": 16}
# Rows measured when every map fused the backbone's stride-8 and stride-16 levels (before levels followed
# the map's stride, feature_maps.default_levels) keep them, so that they still mean what they measured.
L816 = NO_DROPOUT | {"model.levels": [8, 16]}


def dropout_row(p: float, steps: int) -> dict:
    """Levels 4 + 8 with input dropout ``p`` for ``steps`` head steps (a third of the views grey): the
    dropout rows, each pinned to the run length it measured."""
    return GRAY03 | {"model.levels": [4, 8], "model.feature_dropout": p, "train.steps": steps}


# The default when input dropout came (0.3, the default run on small data doubled to 3,000 head steps).
D03 = dropout_row(0.3, 3000)
# Input dropout 0.5 and 4,500 head steps on small data (a third of the views grey; half since).
D05 = dropout_row(0.5, 4500)
CONFIGS: dict[str, tuple[str, dict]] = {
    # the default of the previous release: Eq. 1 loss, §3 positives only, no jitter, dense head, S from the rule
    "before": ("default", BEFORE),
    "box loss + IoU positives": ("default", BEFORE | {"train.box_loss": "box", "train.positive_iou": 0.5,
                                                     "train.alpha": 1.0}),
    "jitter": ("default", BEFORE | {"data.cache_jitter": 0.75}),
    "box loss + IoU positives + jitter": ("default", BEFORE | {"train.box_loss": "box", "train.positive_iou": 0.5,
                                                              "train.alpha": 1.0, "data.cache_jitter": 0.75}),
    "... + stride 8 at half the input size (the data rule), separable head": (
        "default", L816 | {"train.box_loss": "box", "train.positive_iou": 0.5, "train.alpha": 1.0, "data.cache_jitter": 0.75,
                    "model.image_size": None, "model.stride": None, "model.conv_head": "separable"}),
    "... + 416 px, stride 8, separable head": ("default", L816 | {"train.box_loss": "box", "train.positive_iou": 0.5,
                                                          "train.alpha": 1.0, "data.cache_jitter": 0.75,
                                                          "model.image_size": 416, "model.stride": 8,
                                                          "model.conv_head": "separable"}),
    "... + strong jitter (1.0, a third grey), scales 0.6-1.5": (
        "default", L816 | {"train.box_loss": "box", "train.positive_iou": 0.5, "train.alpha": 1.0, "data.cache_jitter": 1.0,
                    "data.cache_gray": 0.3, "data.cache_scales": [0.6, 0.8, 1.0, 1.25, 1.5],
                    "model.image_size": None, "model.stride": None, "model.conv_head": "separable"}),
    "... data rule, dense head": (
        "default", L816 | {"train.box_loss": "box", "train.positive_iou": 0.5, "train.alpha": 1.0, "data.cache_jitter": 0.75,
                    "model.image_size": None, "model.stride": None, "model.conv_head": "dense"}),
    "... data rule, separable head, EfficientNet-Lite2": (
        "default", L816 | {"train.box_loss": "box", "train.positive_iou": 0.5, "train.alpha": 1.0, "data.cache_jitter": 0.75,
                    "model.image_size": None, "model.stride": None, "model.conv_head": "separable",
                    "model.backbone": "efficientnet_lite2"}),
    "... data rule, separable head, per-image feature norm": (
        "default", L816 | {"train.box_loss": "box", "train.positive_iou": 0.5, "train.alpha": 1.0, "data.cache_jitter": 0.75,
                    "model.image_size": None, "model.stride": None, "model.conv_head": "separable",
                    "model.feature_norm": "image"}),
    "default + partial fine-tuning (backbone after the stride-8 level, lr x 0.1)": ("default", L816 | {"train.tune_backbone": True}),
    "default + EfficientNet-Lite2": ("default", L816 | {"model.backbone": "efficientnet_lite2"}),
    "default + EfficientNet-Lite1": ("default", L816 | {"model.backbone": "efficientnet_lite1"}),
    "default, 500 head steps": ("default", L816 | {"train.steps": 500}),
    "default, no grey views": ("default", L816 | {"data.cache_gray": 0.0}),
    "default, no jitter": ("default", L816 | {"data.cache_jitter": 0.0, "data.cache_gray": 0.0}),
    "default, §3 positives only": ("default", L816 | {"train.positive_iou": None}),
    # the levels fused at stride 8 (levels 8 + 16 at stride 8 is the "... + strong jitter" row)
    "default, levels 4 + 8": ("default", NO_DROPOUT | {"model.levels": [4, 8]}),  # the default when levels began to follow the stride
    "default, levels 4 + 8, feature dropout 0.3": ("default", dropout_row(0.3, 1500)),
    "default, levels 4 + 8, feature dropout 0.15": ("default", dropout_row(0.15, 1500)),
    # the default since (feature dropout doubled the default run length on small data)
    "default, levels 4 + 8, feature dropout 0.3, 3,000 head steps": ("default", D03),
    "default, feature dropout 0.5": ("default", dropout_row(0.5, 3000)),
    "default, feature dropout 0.4": ("default", dropout_row(0.4, 3000)),
    "default, feature dropout 0.5, 4,500 head steps": ("default", D05),
    "default, feature dropout 0.5, 6,000 head steps": ("default", dropout_row(0.5, 6000)),
    "default, feature dropout 0.6, 4,500 head steps": ("default", dropout_row(0.6, 4500)),
    # with input dropout 0.5 and 4,500 head steps (D05); half the views grey became the default
    "default, IoU positives 0.4": ("default", D05 | {"train.positive_iou": 0.4}),
    "default, half the views grey": ("default", D05 | {"data.cache_gray": 0.5}),
    # with half the views grey: the NMS threshold from the training boxes (engine.nms_rule) became the default
    "default, NMS threshold from the data": ("default", D05 | {"data.cache_gray": 0.5, "model.nms_iou": None}),
    "default, weight decay 0.05": ("default", D03 | {"train.weight_decay": 0.05}),
    "default, 6,000 head steps": ("default", dropout_row(0.3, 6000)),
    "default, levels 8": ("default", NO_DROPOUT | {"model.levels": [8]}),
    # with levels 4 + 8: the location weight, the head's size, the input and the map's stride
    "default, alpha 4": ("default", NO_DROPOUT | {"model.levels": [4, 8], "train.alpha": 4.0}),
    "default, head depth 2": ("default", NO_DROPOUT | {"model.levels": [4, 8], "model.conv_depth": 2}),
    "default, head depth 5": ("default", NO_DROPOUT | {"model.levels": [4, 8], "model.conv_depth": 5}),
    "default, head 128 channels": ("default", NO_DROPOUT | {"model.levels": [4, 8], "model.conv_hidden": 128}),
    "default, 416 px": ("default", NO_DROPOUT | {"model.levels": [4, 8], "model.image_size": 416, "model.stride": 8}),
    "default, stride 4": ("default", NO_DROPOUT | {"model.levels": [4, 8], "model.image_size": 320, "model.stride": 4}),
    "default, levels 2 + 4 + 8": ("default", NO_DROPOUT | {"model.levels": [2, 4, 8]}),
    "default, levels 4 + 8 + 16": ("default", NO_DROPOUT | {"model.levels": [4, 8, 16]}),
    "default, levels 8 + 16 + 32": ("default", NO_DROPOUT | {"model.levels": [8, 16, 32]}),
    "default": ("default", {}),
    "paper": ("paper", {}),
}


def build_config(preset: str, overrides: dict, data: str, split: str, seed: int) -> Config:
    """The preset with ``overrides`` applied, training on ``split`` of ``data``."""
    cfg = Config.preset(preset)
    cfg.data.data, cfg.data.split, cfg.train.seed, cfg.train.device = data, split, seed, "cpu"
    for key, value in overrides.items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
    return cfg


def inference_rate(model_path: Path, images: list) -> float:
    """Images/s of the whole-image localizer, batch 1, top 100 boxes (fastest of 3 passes)."""
    loc = Localizer.from_checkpoint(model_path, "cpu")
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for image in images:
            loc.predict(image, top_k=100)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def run_one(name: str, protocol: str, seed: int, work: Path) -> dict:
    """Train configuration ``name`` on the protocol's training split and score its val split."""
    preset, overrides = CONFIGS[name]
    train_split, val_split = PROTOCOLS[protocol]
    cfg = build_config(preset, overrides, TREES, train_split, seed)
    out = work / f"{name}-{protocol}-{seed}"
    start = time.perf_counter()
    path = train(cfg, out)
    seconds = time.perf_counter() - start
    m = evaluate(path, out / "eval", TREES, val_split, "cpu", baselines="none")
    from multibox.data.build import load_split

    dataset = load_split(cfg, val_split)
    images = [dataset.load_image(i) for i in range(len(dataset))]
    rates = m["detection_rate"]
    return {"config": name, "protocol": protocol, "seed": seed, "dr10": rates["10"], "dr25": rates["25"],
            "dr100": rates["100"], "ap50": m["pr_ap50"], "coco_ap50": m["coco"]["AP50"], "ar100": m["coco"]["AR100"], "train_s": seconds,
            "infer_img_s": inference_rate(path, images), "threads": torch.get_num_threads()}


def summary(rows: list[dict], key: str, scale: float = 100.0, digits: int = 1) -> str:
    """Mean and min-max of ``key`` over ``rows`` (one per seed)."""
    values = [scale * r[key] for r in rows]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(results: list[dict]) -> str:
    """One line per (configuration, protocol): means over seeds with their min-max."""
    lines = ["| configuration | question | seeds | DR@10 | DR@25 | DR@100 | AP50 | AR@100 | train s | infer img/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["config"], r["protocol"]), []).append(r)
    for (name, protocol), rows in groups.items():
        train_split, val_split = PROTOCOLS[protocol]
        lines.append(f"| {name} | {train_split} -> {val_split} | {','.join(str(r['seed']) for r in rows)} | "
                     f"{summary(rows, 'dr10')} | {summary(rows, 'dr25')} | {summary(rows, 'dr100')} | "
                     f"{summary(rows, 'ap50', 1, 3)} | {summary(rows, 'ar100', 1, 3)} | "
                     f"{summary(rows, 'train_s', 1, 0)} | {summary(rows, 'infer_img_s', 1, 1)} |")
    return "\n".join(lines)


def read_results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="default", help=f"names of CONFIGS separated by '|': {' | '.join(CONFIGS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--protocols", default="sites,same", help="comma-separated: sites (train_yell -> val_sites), same (train -> val)")
    parser.add_argument("--results", default="docs/quality_runs.jsonl", help="one JSON line per run (appended; done runs are skipped)")
    parser.add_argument("--table", action="store_true", help="print the table of the recorded runs and stop")
    parser.add_argument("--out", help="also write the table (markdown) here")
    args = parser.parse_args()
    results_path = Path(args.results)
    if not args.table:
        done = {(r["config"], r["protocol"], r["seed"]) for r in read_results(results_path)}
        with tempfile.TemporaryDirectory() as work:
            for seed in map(int, args.seeds.split(",")):
                for name in args.configs.split("|"):
                    for protocol in args.protocols.split(","):
                        if (name, protocol, seed) in done:
                            continue
                        row = run_one(name, protocol, seed, Path(work))
                        with results_path.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        print(table([row]).splitlines()[-1], flush=True)
    text = f"Machine: {machine(torch.get_num_threads())}.\n\n{table(read_results(results_path))}\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
