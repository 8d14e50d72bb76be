"""Box heads: features -> K location residuals (added to the priors by the localizer) and K logits.

The head interface is (features) -> (residuals Tensor[B, K, 4], logits Tensor[B, K]), so heads can
be swapped without touching the localizer's contract.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


def init_outputs(loc: nn.Module, conf: nn.Module, prior_confidence: float) -> None:
    """Start exactly at the priors (zero residuals), and at a low confidence: few of the K slots hold an object."""
    nn.init.zeros_(loc.weight)
    nn.init.zeros_(loc.bias)
    nn.init.normal_(conf.weight, std=0.01)
    nn.init.constant_(conf.bias, math.log(prior_confidence / (1 - prior_confidence)))


class FCHead(nn.Module):
    """Fully connected box head: features Tensor[B, D] -> (residuals Tensor[B, K, 4], logits Tensor[B, K]).

    The paper's head (§3): one hidden layer over the whole image's features, K x 4 + K outputs.
    """

    def __init__(self, in_features: int, num_boxes: int, hidden_dim: int = 1024, prior_confidence: float = 0.05) -> None:
        super().__init__()
        self.num_boxes = num_boxes
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden_dim), nn.ReLU(inplace=True)) if hidden_dim else nn.Identity()
        width = hidden_dim or in_features
        self.loc = nn.Linear(width, num_boxes * 4)
        self.conf = nn.Linear(width, num_boxes)
        init_outputs(self.loc, self.conf, prior_confidence)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        h = self.hidden(features)
        return self.loc(h).view(-1, self.num_boxes, 4), self.conf(h)  # [B, K*4] -> [B, K, 4]


class ConvHead(nn.Module):
    """Translation-invariant box head: feature map Tensor[B, C, G_r, G_c] -> (residuals Tensor[B, K, 4],
    logits Tensor[B, K]), K = G_r * G_c * A, in :func:`multibox.modeling.priors.grid_priors` order.

    ``depth`` 3x3 convolutions of ``hidden`` channels ("dense"), or as many depthwise 3x3 + pointwise 1x1
    pairs ("separable", MobileNet's factorisation: the same 3x3 context at about 1/9 of the multiply-adds,
    so the head stops costing more than the backbone at large inputs), then 1x1 convolutions to A x 4
    residuals and A logits per cell. Residuals are in units of their prior's width and height (the caller
    scales them), so the same weights serve a training window and a whole image. ``dropout``: the share of
    input channels dropped while training (whole channels, Dropout2d), so that no few backbone channels
    that describe the training photo carry the scores alone (docs/quality.md: more of another site's crowns).
    """

    def __init__(self, in_channels: int, num_shapes: int, hidden: int = 128, depth: int = 2,
                 prior_confidence: float = 0.01, kind: str = "dense", dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout)
        layers, c = [], in_channels
        for _ in range(depth):
            if kind == "separable":
                layers += [nn.Conv2d(c, c, 3, padding=1, groups=c), nn.Conv2d(c, hidden, 1), nn.ReLU(inplace=True)]
            else:
                layers += [nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(inplace=True)]
            c = hidden
        self.body, self.num_shapes = nn.Sequential(*layers), num_shapes
        self.loc = nn.Conv2d(c, num_shapes * 4, 1)
        self.conf = nn.Conv2d(c, num_shapes, 1)
        init_outputs(self.loc, self.conf, prior_confidence)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(self.dropout(features))
        b, _, rows, cols = h.shape
        a = self.num_shapes
        residuals = self.loc(h).view(b, a, 4, rows, cols).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)  # [B, G*G*A, 4]
        logits = self.conf(h).view(b, a, rows, cols).permute(0, 2, 3, 1).reshape(b, -1)  # [B, G*G*A]
        return residuals, logits
