"""The optimizers a run can use (§4.1 trains with Adagrad), by the names of :data:`multibox.config.OPTIMIZERS`."""

from __future__ import annotations

import math

import torch

from multibox.config import OPTIMIZERS, Config

BUILDERS = {  # one per name of config.OPTIMIZERS
    "adagrad": lambda params, t: torch.optim.Adagrad(params, lr=t.lr, weight_decay=t.weight_decay),  # §4.1
    "sgd": lambda params, t: torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay),
    "adam": lambda params, t: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay),
}


assert set(BUILDERS) == set(OPTIMIZERS)


def lr_factor(step: int, progress: float, warmup_steps: int, schedule: str) -> float:
    """The learning rate of ``step`` over the peak: linear warmup over warmup_steps, then "cosine"
    decay to 0 at progress 1 (the stop rule's end), or "constant"."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    return warm * (0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0)


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer of the trainable parameters; a trained backbone's in a group of its own whose
    learning rate is train.backbone_lr times the rest ("lr_scale", applied by the trainer each step):
    pretrained layers move less than a freshly initialized head."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    backbone = [p for n, p in named if n.startswith("backbone.")]
    rest = [p for n, p in named if not n.startswith("backbone.")]
    groups = [{"params": rest, "lr_scale": 1.0}] + ([{"params": backbone, "lr_scale": cfg.train.backbone_lr}] if backbone else [])
    return BUILDERS[cfg.train.optimizer](groups, cfg.train)
