"""Box heads: features -> K location residuals (added to the priors by the localizer) and K logits.

The head interface is (features) -> (residuals Tensor[B, K, 4], logits Tensor[B, K]), so heads can
be swapped without touching the localizer's contract.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


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
        # Start exactly at the priors, and at a low confidence since few of K slots hold an object.
        nn.init.zeros_(self.loc.weight)
        nn.init.zeros_(self.loc.bias)
        nn.init.normal_(self.conf.weight, std=0.01)
        nn.init.constant_(self.conf.bias, math.log(prior_confidence / (1 - prior_confidence)))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        h = self.hidden(features)
        return self.loc(h).view(-1, self.num_boxes, 4), self.conf(h)  # [B, K*4] -> [B, K, 4]
