"""NMS threshold sweep: the same trained models scored at several NMS thresholds on both questions of
bench/quality.py (docs/quality.md, "NMS threshold from the training boxes").

Each (protocol, seed) is trained once with quality.py's configuration into ``--models`` (kept: a second
run only scores), then its val split is scored like `multibox evaluate` at every threshold. With
``--speed``, the first model's whole-image localizer (as `multibox detect` loads it, top 100 boxes, one
image at a time) is also timed at every threshold, all in the same rounds (measure.interleaved_rates).

    PYTHONPATH=src python bench/nms_sweep.py --models /tmp/nms-models [--config default --seeds 0,1,2] [--speed]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import quality  # noqa: E402
from measure import interleaved_rates, machine  # noqa: E402
from multibox.data.build import load_split  # noqa: E402
from multibox.engine.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint  # noqa: E402
from multibox.engine.trainer import train  # noqa: E402
from multibox.evaluation.scoring import dataset_targets, score  # noqa: E402
from multibox.inference.localizer import Localizer  # noqa: E402
from multibox.inference.predict import predict_dataset  # noqa: E402


def trained(name: str, protocol: str, seed: int, models: Path) -> Path:
    """last.pt of configuration ``name`` trained on the protocol's training split (trained if missing)."""
    out = models / f"{protocol}-{seed}"
    if not (out / "done").exists():
        preset, overrides = quality.CONFIGS[name]
        train(quality.build_config(preset, overrides, quality.TREES, quality.PROTOCOLS[protocol][0], seed), out)
        (out / "done").write_text(name)
    return out / "last.pt"


def rates(path: Path, split: str, thresholds: list[float]) -> dict[float, tuple[float, float, float, float]]:
    """{threshold: (DR@10, DR@25, DR@100, PR AP50)} of the model at ``path`` on ``split``."""
    model, cfg = model_from_checkpoint(load_checkpoint(path))
    dataset = load_split(cfg, split)
    targets, found = dataset_targets(dataset), {}
    for iou in thresholds:
        localizer = Localizer(model, cfg.model.image_size, "cpu", iou, cfg.model.windows)
        m = score(predict_dataset(localizer, dataset, 8, 0), targets, 100).metrics
        found[iou] = (*(m["detection_rate"][k] for k in ("10", "25", "100")), m["pr_ap50"])
    return found


def speeds(path: Path, split: str, thresholds: list[float]) -> dict[float, float]:
    """{threshold: images/s} of the localizer at ``path`` on ``split``'s images, timed in the same rounds."""
    localizers = {}
    for iou in thresholds:
        localizers[iou] = Localizer.from_checkpoint(path)
        localizers[iou].nms_iou = iou
    dataset = load_split(checkpoint_config(load_checkpoint(path)), split)
    images = [dataset.load_image(i) for i in range(len(dataset))] * 10
    return interleaved_rates({iou: (lambda im, loc=loc: loc.predict(im, top_k=100)) for iou, loc in localizers.items()},
                             images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="a configuration of bench/quality.py")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--protocols", default="sites,same")
    parser.add_argument("--nms", default="0.2,0.25,0.3,0.35,0.4,0.5,0.6", help="comma-separated NMS thresholds")
    parser.add_argument("--models", required=True, help="folder for the trained models (kept between runs)")
    parser.add_argument("--speed", action="store_true", help="also time the first model at every threshold")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.nms.split(",")]
    print("| question | NMS IoU | seeds | DR@10 | DR@25 | DR@100 | PR AP50 | DR@100 per seed |\n|---|---:|---|---:|---:|---:|---:|---|")
    for protocol in args.protocols.split(","):
        seeds = [int(s) for s in args.seeds.split(",")]
        runs = [rates(trained(args.config, protocol, s, Path(args.models)), quality.PROTOCOLS[protocol][1], thresholds)
                for s in seeds]
        for iou in thresholds:
            cols = [statistics.mean(run[iou][i] for run in runs) for i in range(4)]
            print(f"| {' -> '.join(quality.PROTOCOLS[protocol])} | {iou:g} | {args.seeds} | {100 * cols[0]:.1f} | "
                  f"{100 * cols[1]:.1f} | {100 * cols[2]:.1f} | {cols[3]:.3f} | "
                  f"{' / '.join(f'{100 * run[iou][2]:.1f}' for run in runs)} |", flush=True)
    if args.speed:
        protocol, seed = args.protocols.split(",")[0], int(args.seeds.split(",")[0])
        rates_per_s = speeds(trained(args.config, protocol, seed, Path(args.models)), quality.PROTOCOLS[protocol][1], thresholds)
        print(f"\n{machine(torch.get_num_threads())}\n\n| NMS IoU | images/s ({protocol}, seed {seed}, top 100, 1 image at a time) |\n|---:|---:|")
        for iou, rate in rates_per_s.items():
            print(f"| {iou:g} | {rate:.1f} |")


if __name__ == "__main__":
    main()
