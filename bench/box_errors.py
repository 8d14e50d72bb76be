"""Where the next photo's crowns are lost: per image, how many objects the top 100 boxes hit at IoU 0.3
and 0.5, and how the box nearest each object is off (log width and height ratio, centre offset in the
object's sizes), for the models bench/nms_sweep.py trains (docs/quality.md).

    PYTHONPATH=src python bench/box_errors.py --models DIR [--config default --seeds 0,1,2 --protocols sites,same]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).parent))

import quality  # noqa: E402
from nms_sweep import trained  # noqa: E402
from multibox.data.build import load_split  # noqa: E402
from multibox.evaluation.scoring import dataset_targets  # noqa: E402
from multibox.inference.localizer import Localizer  # noqa: E402

NEAR = 0.2  # an object's nearest box counts for the size errors above this IoU (else it has none)


def errors(gt: torch.Tensor, boxes: torch.Tensor) -> dict[str, float]:
    """gt Tensor[M, 4], boxes Tensor[N, 4] (pixels, best first): hit shares and the nearest boxes' errors."""
    iou = box_iou(gt, boxes)  # [M, N]
    best, nearest = iou.max(dim=1)
    near = best > NEAR
    g, b = gt[near], boxes[nearest[near]]
    gw, gh, bw, bh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    dx = ((b[:, 0] + b[:, 2]) - (g[:, 0] + g[:, 2])).abs() / (2 * gw)
    dy = ((b[:, 1] + b[:, 3]) - (g[:, 1] + g[:, 3])).abs() / (2 * gh)
    return {"hit@.3": (best >= 0.3).float().mean().item(), "hit@.5": (best >= 0.5).float().mean().item(),
            "log w": (bw / gw).log().mean().item(), "log h": (bh / gh).log().mean().item(),
            "|dx|": dx.median().item(), "|dy|": dy.median().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="a configuration of bench/quality.py")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--protocols", default="sites,same")
    parser.add_argument("--models", required=True, help="folder of the trained models (bench/nms_sweep.py's)")
    args = parser.parse_args()
    print("| question | seed | image | objects | hit at IoU 0.3 | at 0.5 | log w ratio | log h ratio | median abs dx | dy |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for protocol in args.protocols.split(","):
        for seed in map(int, args.seeds.split(",")):
            loc = Localizer.from_checkpoint(trained(args.config, protocol, seed, Path(args.models)))
            dataset = load_split(quality.build_config("default", {}, quality.TREES, "train", seed), quality.PROTOCOLS[protocol][1])
            for i, target in enumerate(dataset_targets(dataset)):
                boxes, _ = loc.predict(dataset.load_image(i), top_k=100)
                e = errors(target["boxes"].float(), boxes)
                print(f"| {' -> '.join(quality.PROTOCOLS[protocol])} | {seed} | {dataset.records[i].image_id[:12]} | "
                      f"{len(target['boxes'])} | " + " | ".join(f"{v:.2f}" for v in e.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
