"""Levers that were tried on the quality protocol and did not become options: each one a patch of the
library's training, run through bench/quality.py's protocol and recorded as its own row.

They stay here, not in the library, because none helped the next photo (docs/quality.md gives the rows);
this script is how the rows were made and how anyone can make them again. Each patches the default it
was measured against (``BASES``): the first two, levels 4 + 8 at stride 8 without input dropout
(quality.NO_DROPOUT); the next two (feature style, focal), the same with input dropout 0.3 and 3,000 head steps (quality.D03);
``--base NAME`` adds a lever to one of bench/quality.py's configurations instead (the row is "NAME + lever";
``EMA``, ``GIoU`` and ``aspect`` were measured so, on "default, NMS threshold from the data").
Another lever tried this way, channel dropout on the head's input, helped the next photo and became an
option, ``model.feature_dropout``.

* ``background``: background randomization of the cached views. Half of the jittered views get a new
  ground: outside ellipses inscribed in the ground-truth boxes (the crowns), the pixels are washed out
  to bright sand-like tones, blended toward a random colour, or given the inverse of their brightness,
  so that the head must rank crowns by their own look, not by the ground around them (the next photo's
  failure: confident boxes on bright sand between shrubs).
* ``IoU targets``: IoU-aware confidence: a positive's target is the IoU of its predicted box with its
  ground truth instead of 1 (IoU-aware / varifocal-style scores), so better-placed boxes rank higher.
* ``feature style``: augmentation in feature space (DSU, Li et al. ICLR 2022): on half of the steps each
  window's per-channel mean and standard deviation are resampled around their values, with the spread
  they have over the batch, before the head's input dropout: the same crowns under other "styles".
* ``focal``: the confidence term's cross-entropy replaced by the focal loss (RetinaNet: alpha 0.25,
  gamma 2), so that the many easy negatives weigh less than the hard ones.
* ``EMA``: the weights scored are an exponential moving average of the trained ones (decay 0.998,
  about the last 500 steps, warmed up as (1 + n) / (10 + n); Ultralytics' ModelEMA), a flatter
  solution than the last step's.
* ``GIoU``: the location term gets 1 - GIoU of each positive's box with its ground truth besides the
  smooth L1 (DETR's pair of box losses), so that boxes are pulled toward overlap, the quantity the
  detection rate counts, not only toward each coordinate.
* ``aspect``: the cached views at the input scales other than S (0.6, 0.8, 1.25, 1.5 x S) are also
  stretched, width x sqrt(a) and height / sqrt(a), a log-uniform in [0.75, 1.33] per image and scale,
  so that a crown's box must come from its own extent, not from the shapes the training photo's crowns
  have (the next photo's boxes come out 13-28 % too wide: bench/box_errors.py).

    PYTHONPATH=src python bench/levers.py --lever "background" --seeds 0,1,2 --protocols sites
    (and --lever "IoU targets" | "feature style" | focal; rows go to docs/quality_runs.jsonl)
    PYTHONPATH=src python bench/levers.py --lever focal --base "default, feature dropout 0.5, 4,500 head steps"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

sys.path.insert(0, str(Path(__file__).parent))

import quality  # noqa: E402
from multibox.data import photometric  # noqa: E402
from multibox.engine import feature_cache, trainer  # noqa: E402
from multibox.evaluation import overlaps  # noqa: E402
from multibox.modeling import heads, losses  # noqa: E402

BACKGROUND_SHARE = 0.5  # share of the jittered views that get a new ground
STYLE_SHARE = 0.5  # share of the steps whose windows get new feature statistics (DSU's p)
STYLE_STRENGTH = 1.0  # the statistics' noise, in units of their spread over the batch
conv_forward = heads.ConvHead.forward
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0  # RetinaNet's
EMA_DECAY = 0.998  # averages about the last 1 / (1 - decay) = 500 steps
train_step, fit = trainer.train_step, trainer.fit
cache_image = feature_cache._cache_image
ASPECT_RANGE = (0.75, 4 / 3)  # a = new width / height ratio over the old one
GIOU_WEIGHT = 1.0  # beside the smooth L1 in ground-truth sizes (4 coordinates, each ~0.1-0.3 when trained)
location = losses.MultiBoxLoss.location


def ellipse_mask(boxes: np.ndarray, side: int) -> torch.Tensor:
    """Tensor[side, side] in [0, 1]: 1 inside the ellipses inscribed in ``boxes`` (pixels), a soft edge."""
    if len(boxes) == 0:
        return torch.zeros(side, side)
    b = torch.as_tensor(boxes, dtype=torch.float32)
    center, radius = (b[:, :2] + b[:, 2:]) / 2, ((b[:, 2:] - b[:, :2]) / 2).clamp(min=1)
    pos = torch.arange(side, dtype=torch.float32) + 0.5
    dx = (pos[None, None, :] - center[:, 0, None, None]) / radius[:, 0, None, None]
    dy = (pos[None, :, None] - center[:, 1, None, None]) / radius[:, 1, None, None]
    return ((1.15 - (dx.square() + dy.square()).amin(0)).clamp(0, 0.3) / 0.3)


def new_ground(pixels: torch.Tensor, boxes: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """uint8 Tensor[3, S, S] with the pixels outside the boxes' ellipses given another ground."""
    inside = ellipse_mask(boxes, pixels.shape[-1])[None]
    x = pixels.float()
    gray = x.mean(0, keepdim=True)
    kind = rng.integers(3)
    if kind == 0:  # bright, washed-out ground (sand, dry grass)
        ground = (gray + rng.uniform(0, 0.7) * (x - gray)) * rng.uniform(1.2, 2.2) + rng.uniform(0, 60)
    elif kind == 1:  # toward a random ground colour
        colour = torch.tensor(rng.uniform(60, 240, 3), dtype=torch.float32)[:, None, None]
        share = rng.uniform(0.3, 0.8)
        ground = (1 - share) * x + share * colour
    else:  # brightness inverted (shadows light, light ground dark)
        ground = x - gray + (255 - gray) * rng.uniform(0.6, 1.0)
    return (inside * x + (1 - inside) * ground).clamp(0, 255).to(torch.uint8)


def background_cache_image(model, dataset, index, size, kinds, device, views):
    """feature_cache._cache_image with :func:`new_ground` before the jitter of half the jittered views."""
    image = dataset.load_image(index)
    record = dataset.records[index]
    positives = record.boxes[~record.ignore] * (image.width / record.width)
    pixels, scale = feature_cache.padded_input(image, size)
    boxes = [feature_cache.dihedral_boxes(positives * scale, size, t) for t in kinds]
    inputs = []
    for t, b in zip(kinds, boxes):
        view = feature_cache.dihedral(pixels, t)
        if not (t == 0 and size == model.image_size):
            rng = np.random.default_rng([views.seed, index, size, t, 7])
            if rng.random() < BACKGROUND_SHARE:
                view = new_ground(view, b, rng)
            view = photometric.jitter(view, views.jitter, np.random.default_rng([views.seed, index, size, t]), views.gray)
        inputs.append(view)
    maps = model.features(torch.stack(inputs).to(device)).half().cpu()
    return [feature_cache.CachedMap(maps[j], b) for j, b in enumerate(boxes)]


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of each box of Tensor[..., 4] with the box at the same place in ``b`` (the library's row-wise
    IoU; 0, not NaN, where both boxes are empty: the padding ground truth against an empty box)."""
    return overlaps.paired_iou(a.reshape(-1, 4), b.reshape(-1, 4)).view(a.shape[:-1]).nan_to_num(0.0)


def iou_targets(self, positive: torch.Tensor, pred_boxes: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """MultiBoxLoss.confidence_targets graded: each positive's target = IoU(its box, its ground truth)."""
    return positive * paired_iou(pred_boxes.detach(), goal)


def style_jitter(features: torch.Tensor) -> torch.Tensor:
    """Tensor[B, C, H, W] with each window's channel statistics resampled (DSU, Li et al. ICLR 2022): the
    per-channel mean and standard deviation of a window move by Gaussian noise scaled by how much those
    statistics vary over the batch, so the head sees the same crowns under other feature "styles"."""
    mu = features.mean((2, 3), keepdim=True)
    sigma = (features.var((2, 3), keepdim=True) + 1e-6).sqrt()
    spread_mu = (mu.var(0, keepdim=True) + 1e-6).sqrt()
    spread_sigma = (sigma.var(0, keepdim=True) + 1e-6).sqrt()
    new_mu = mu + STYLE_STRENGTH * torch.randn_like(mu) * spread_mu
    new_sigma = sigma + STYLE_STRENGTH * torch.randn_like(sigma) * spread_sigma
    return (features - mu) / sigma * new_sigma + new_mu


def style_forward(self, features: torch.Tensor):
    if self.training and torch.rand(()) < STYLE_SHARE:
        features = style_jitter(features)
    return conv_forward(self, features)


# the default each lever was measured against (the others: before the head's input dropout)
BASES = {"feature style": quality.D03, "focal": quality.D03}


class FocalFunctional:
    """torch.nn.functional with the binary cross-entropy replaced by the focal loss (RetinaNet, Lin et al.
    2017: easy negatives weigh (p)^gamma less, so the hard ones, like the next photo's bright sand, count)."""

    def __getattr__(self, name: str):
        return getattr(torch.nn.functional, name)

    @staticmethod
    def binary_cross_entropy_with_logits(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "sum"):
        return sigmoid_focal_loss(logits, targets, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA, reduction=reduction)


def ema_train_step(run, images, targets):
    """trainer.train_step, then the moving average of run.model's floating-point weights and buffers."""
    terms = train_step(run, images, targets)
    state = run.model.state_dict()
    if not hasattr(run, "ema"):
        run.ema, run.ema_updates = {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}, 0
    run.ema_updates += 1
    decay = min(EMA_DECAY, (1 + run.ema_updates) / (10 + run.ema_updates))
    with torch.no_grad():
        for k, v in run.ema.items():
            v.mul_(decay).add_(state[k].detach(), alpha=1 - decay)
    return terms


def ema_fit(run, *args, **kwargs):
    """trainer.fit, then last.pt rewritten with the averaged weights (the file the protocol scores)."""
    path = fit(run, *args, **kwargs)
    if hasattr(run, "ema"):
        run.model.load_state_dict(run.ema, strict=False)
        path = run.save()
    return path


def giou_location(self, pred: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """MultiBoxLoss.location + GIOU_WEIGHT x (1 - GIoU), Tensor[B, K] (the loss masks the positives)."""
    return location(self, pred, goal) + GIOU_WEIGHT * generalized_box_iou_loss(pred, goal, reduction="none")


def aspect_cache_image(model, dataset, index, size, kinds, device, views):
    """feature_cache._cache_image of the image stretched by a random aspect (the plain size S: unstretched)."""
    if size == model.image_size:
        return cache_image(model, dataset, index, size, kinds, device, views)
    rng = np.random.default_rng([views.seed, index, size, 99])
    root = float(np.exp(rng.uniform(*np.log(ASPECT_RANGE)))) ** 0.5
    image, record = dataset.load_image(index), dataset.records[index]  # trees-dev: every image reads
    wide = image.resize((max(1, round(image.width * root)), max(1, round(image.height / root))))
    factors = np.array([wide.width / record.width, wide.height / record.height] * 2, np.float32)
    stretched = dataclasses.replace(record, boxes=record.boxes * factors, width=wide.width, height=wide.height)
    proxy = SimpleNamespace(load_image=lambda i: wide, records={index: stretched})
    return cache_image(model, proxy, index, size, kinds, device, views)


def apply(lever: str) -> None:
    if lever == "background":
        feature_cache._cache_image = background_cache_image
    elif lever == "IoU targets":
        losses.MultiBoxLoss.confidence_targets = iou_targets
    elif lever == "focal":
        losses.F = FocalFunctional()
    elif lever == "feature style":
        heads.ConvHead.forward = style_forward
    elif lever == "aspect":
        feature_cache._cache_image = aspect_cache_image
    elif lever == "GIoU":
        losses.MultiBoxLoss.location = giou_location
    elif lever == "EMA":
        trainer.train_step, trainer.fit = ema_train_step, ema_fit
    else:
        raise SystemExit(f"unknown lever {lever!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lever", required=True, help="background | IoU targets | feature style | focal | EMA | GIoU | aspect")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--protocols", default="sites")
    parser.add_argument("--results", default="docs/quality_runs.jsonl")
    parser.add_argument("--base", help="a bench/quality.py configuration to add the lever to (default: BASES)")
    args = parser.parse_args()
    if args.base is not None and args.base not in quality.CONFIGS:
        raise SystemExit(f"unknown --base {args.base!r}: one of bench/quality.py's CONFIGS")
    apply(args.lever)  # for the whole process: one lever per run of this script
    if args.base is None:
        name, base = f"default + {args.lever} (bench/levers.py)", BASES.get(args.lever, quality.NO_DROPOUT)
    else:
        name, base = f"{args.base} + {args.lever} (bench/levers.py)", quality.CONFIGS[args.base][1]
    quality.CONFIGS[name] = ("default", base)
    done = {(r["config"], r["protocol"], r["seed"]) for r in quality.read_results(Path(args.results))}
    with tempfile.TemporaryDirectory() as work:
        for seed in map(int, args.seeds.split(",")):
            for protocol in args.protocols.split(","):
                if (name, protocol, seed) not in done:
                    row = quality.run_one(name, protocol, seed, Path(work))
                    with open(args.results, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(quality.table([row]).splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
