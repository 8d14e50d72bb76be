"""The DeepMultiBox localizer network (§3 "Model").

backbone -> last hidden layer -> two linear outputs: K x 4 location residuals, added to the K priors
("learn a residual to a prior", §3 "Training Details"), and K confidence logits (c_i = sigmoid).
``forward`` returns the same dict in train and eval mode; matching, loss and post-processing live in
their own modules. Input normalization is part of the model, so exported graphs take plain RGB in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from multibox.backbones import build_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FCHead(nn.Module):
    """Fully connected box head: features Tensor[B, D] -> (residuals Tensor[B, K, 4], logits Tensor[B, K]).

    The head interface is (features) -> (residuals, logits); a convolutional, translation-invariant
    head with priors per feature-map cell can replace it without touching the model's contract.
    """

    def __init__(self, in_features: int, num_boxes: int, hidden_dim: int = 1024, prior_confidence: float = 0.05) -> None:
        super().__init__()
        self.num_boxes = num_boxes
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden_dim), nn.ReLU(inplace=True)) if hidden_dim else nn.Identity()
        width = hidden_dim or in_features
        self.loc = nn.Linear(width, num_boxes * 4)
        self.conf = nn.Linear(width, num_boxes)
        # Start exactly at the priors, and at a low confidence since few of K slots hold an object.
        nn.init.zeros_(self.loc.weight)
        nn.init.zeros_(self.loc.bias)
        nn.init.normal_(self.conf.weight, std=0.01)
        nn.init.constant_(self.conf.bias, math.log(prior_confidence / (1 - prior_confidence)))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        h = self.hidden(features)
        return self.loc(h).view(-1, self.num_boxes, 4), self.conf(h)  # [B, K*4] -> [B, K, 4]


class MultiBox(nn.Module):
    """images Tensor[B, 3, S, S] (RGB in [0, 1], or uint8) -> {"pred_boxes": Tensor[B, K, 4] xyxy in
    [0, 1] of the input, "pred_logits": Tensor[B, K]}.

    priors: Tensor[K, 4], saved with the weights (a buffer), so a checkpoint is self-contained.
    """

    def __init__(self, backbone: nn.Module, priors: Tensor, hidden_dim: int = 1024) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = FCHead(backbone.out_features, priors.shape[0], hidden_dim)
        self.register_buffer("priors", priors.detach().clone().float())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def num_boxes(self) -> int:
        return self.priors.shape[0]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.dtype == torch.uint8:
            images = images.float() / 255
        x = (images - self.mean) / self.std
        residuals, logits = self.head(self.backbone(x))
        return {"pred_boxes": self.priors + residuals, "pred_logits": logits}


def build_model(backbone: str, priors: Tensor, weights: str | None = None, hidden_dim: int = 1024,
                grid: int = 4) -> MultiBox:
    """A MultiBox localizer with the named backbone and the given priors Tensor[K, 4]."""
    return MultiBox(build_backbone(backbone, weights, grid), priors, hidden_dim)
