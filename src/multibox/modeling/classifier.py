"""The second network of the detector: a C+1-way classifier of box regions (§4.2, §4.2.1).

"Our second model then classifies each bounding box as objects of interest or background" (§4.1).
It uses the same named backbones as the localizer (:func:`multibox.modeling.backbones.build_backbone`), a
hidden layer and a linear layer of C + 1 logits: the dataset's C classes at their own indices, and
background at index C. Its training crops come from :mod:`multibox.data.classifier_samples`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multibox.modeling.backbones import build_backbone
from multibox.modeling.localizer import IMAGENET_MEAN, IMAGENET_STD


class Classifier(nn.Module):
    """images Tensor[B, 3, S, S] (RGB in [0, 1], or uint8) -> {"logits": Tensor[B, C + 1]}.

    Input normalization is part of the model, as in :class:`multibox.modeling.localizer.MultiBox`.
    """

    def __init__(self, backbone: nn.Module, num_outputs: int, hidden_dim: int = 1024, dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        width = hidden_dim or backbone.out_features
        hidden = [nn.Linear(backbone.out_features, hidden_dim), nn.ReLU(inplace=True)] if hidden_dim else []
        self.head = nn.Sequential(*hidden, nn.Dropout(dropout), nn.Linear(width, num_outputs))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def num_outputs(self) -> int:
        return self.head[-1].out_features

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.dtype == torch.uint8:
            images = images.float() / 255
        x = (images - self.mean) / self.std
        return {"logits": self.head(self.backbone(x))}


def build_classifier(backbone: str, num_classes: int, weights: str | None = None, hidden_dim: int = 1024,
                     grid: int = 4) -> Classifier:
    """A classifier over ``num_classes`` object classes plus background (num_classes + 1 logits)."""
    return Classifier(build_backbone(backbone, weights, grid), num_classes + 1, hidden_dim)
