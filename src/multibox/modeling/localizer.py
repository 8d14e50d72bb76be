"""The DeepMultiBox localizer network (§3 "Model").

backbone -> last hidden layer -> two linear outputs: K x 4 location residuals, added to the K priors
("learn a residual to a prior", §3 "Training Details"), and K confidence logits (c_i = sigmoid).
``forward`` returns the same dict in train and eval mode; matching, loss and post-processing live in
their own modules. Input normalization is part of the model, so exported graphs take plain RGB in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multibox.modeling.backbones import build_backbone
from multibox.modeling.heads import FCHead

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
