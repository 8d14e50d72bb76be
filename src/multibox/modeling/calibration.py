"""Score calibration: an affine map of the confidence logits, z -> a z + b (a > 0), fitted after training.

A trained localizer's confidences rank well but need not mean what they say: a box scored 0.5 may be
right far more or less often than half the time, and that share differs between models, so a
threshold like ``--conf 0.25`` would not mean the same thing on two of them. Platt scaling (a
temperature 1/a and a bias b) on the validation images fixes the meaning without changing the ranking
(a > 0 keeps every order; :mod:`multibox.evaluation.calibration` fits it). Identity until fitted, so
training and the §3 assignment see the raw logits; kept as buffers, so checkpoints and exports carry it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ScoreCalibration(nn.Module):
    """logits Tensor[B, K] -> scale * logits + bias (identity until :meth:`set` is called)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("bias", torch.zeros(()))

    def set(self, scale: float, bias: float) -> None:
        """Use z -> scale * z + bias from now on (scale > 0: the ranking of boxes is kept)."""
        if not scale > 0:
            raise ValueError(f"calibration scale {scale}: must be > 0 (keeps the ranking)")
        self.scale.fill_(scale)
        self.bias.fill_(bias)

    def forward(self, logits: Tensor) -> Tensor:
        return logits * self.scale + self.bias
