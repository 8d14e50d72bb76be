"""Backbones for the convolutional head: image Tensor[B, 3, S, S] -> one feature map Tensor[B, C, S/s, S/s].

The translation-invariant head (the authors' next step, MultiBox v2 and SSD) predicts boxes per cell
of a feature map, so it needs the map itself, not a pooled vector. Objects in users' photos are often
small (tree crowns of 15-60 px), so the map is fine (stride 16 or 8, from the data) and carries
features of two depths (:func:`default_levels`: the map's stride and the next finer one, e.g. the
backbone's stride-8 and stride-16 stages for a stride-16 map), the coarser one upsampled and the finer
one average-pooled to the map's stride, concatenated (a two-level pyramid in one tensor).
Every module exposes ``out_channels`` (C) and ``stride`` (s).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multibox.errors import UserError

CONV_HEAD_BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "tiny")


def lite_taps(net: nn.Module) -> tuple[dict[int, int], dict[int, int]]:
    """({stride: index of the last block at that stride}, {stride: its channels}) of an EfficientNet-Lite,
    read off one small forward pass (Lite0/1/2 differ in depth and width; Lite0's stages end at blocks
    2, 4, 10, 15 with 24, 40, 112, 320 channels)."""
    taps, channels = {}, {}
    with torch.no_grad():
        x = net._conv_stem(torch.zeros(1, 3, 64, 64))
        for i, block in enumerate(net._blocks):
            x = block(x)
            stride = 64 // x.shape[-1]
            taps[stride], channels[stride] = i, x.shape[1]
    return taps, channels


def fuse(levels: dict[int, Tensor], stride: int) -> Tensor:
    """Every level {stride: Tensor[B, C_s, H/s, W/s]} resampled to ``stride`` and concatenated:
    Tensor[B, sum C_s, H/stride, W/stride] (coarser levels bilinearly upsampled, finer ones pooled)."""
    size = levels[stride].shape[-2:]
    parts = []
    for s in sorted(levels):
        f = levels[s]
        if s < stride:
            f = F.avg_pool2d(f, stride // s)
        elif s > stride:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        parts.append(f)
    return torch.cat(parts, dim=1)


class LiteMaps(nn.Module):
    """EfficientNet-Lite0/1/2 (its packaged ImageNet weights) tapped at ``levels`` and fused at ``stride``."""

    def __init__(self, net: nn.Module, levels: tuple[int, ...] = (8, 16), stride: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        net.eval()  # the probe pass must not touch batch-norm statistics
        taps, channels = lite_taps(net)
        last = max(taps[s] for s in levels)
        self.blocks = nn.ModuleList(net._blocks[: last + 1])
        self.taps = {taps[s]: s for s in levels}
        self.stride, self.out_channels = stride, sum(channels[s] for s in levels)
        # The split of partial fine-tuning: front() up to the finest tap (cached), back() after it (trained).
        self.front_stride, self.front_channels, self._split = min(levels), channels[min(levels)], taps[min(levels)] + 1

    def forward(self, x: Tensor) -> Tensor:
        return self.back(self.front(x))

    def front(self, x: Tensor) -> Tensor:
        """Image -> the finest tapped level Tensor[B, C_f, H/f, W/f] (f = front_stride)."""
        x = self.stem(x)
        for block in self.blocks[: self._split]:
            x = block(x)
        return x

    def back(self, x: Tensor) -> Tensor:
        """:meth:`front`'s output -> the fused map: the remaining blocks, every level tapped and fused."""
        levels = {self.front_stride: x}
        for i, block in enumerate(self.blocks[self._split :], start=self._split):
            x = block(x)
            if i in self.taps:
                levels[self.taps[i]] = x
        return fuse(levels, self.stride)

    def back_modules(self) -> nn.ModuleList:
        """The blocks :meth:`back` runs (what partial fine-tuning trains)."""
        return self.blocks[self._split :]


class TinyMaps(nn.Module):
    """A small strided CNN (stages of stride 2, 4, 8, 16) for tests and the CPU demo, fused at ``stride``."""

    def __init__(self, levels: tuple[int, ...] = (8, 16), stride: int = 16) -> None:
        super().__init__()
        widths = {2: 32, 4: 64, 8: 128, 16: 192}
        stages, c_in = [], 3
        for s, c_out in widths.items():
            stages.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                                        nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)))
            c_in = c_out
        self.stages, self.strides, self.levels = nn.ModuleList(stages), list(widths), tuple(levels)
        self.stride, self.out_channels = stride, sum(widths[s] for s in levels)
        self.front_stride, self.front_channels = min(levels), widths[min(levels)]
        self._split = self.strides.index(self.front_stride) + 1

    def forward(self, x: Tensor) -> Tensor:
        return self.back(self.front(x))

    def front(self, x: Tensor) -> Tensor:
        """Image -> the finest tapped level (as :meth:`LiteMaps.front`)."""
        for stage in self.stages[: self._split]:
            x = stage(x)
        return x

    def back(self, x: Tensor) -> Tensor:
        """:meth:`front`'s output -> the fused map."""
        levels = {self.front_stride: x}
        for s, stage in zip(self.strides[self._split :], self.stages[self._split :]):
            x = stage(x)
            if s in self.levels:
                levels[s] = x
        return fuse(levels, self.stride)

    def back_modules(self) -> nn.ModuleList:
        return self.stages[self._split :]


def default_levels(stride: int) -> tuple[int, int]:
    """The levels fused when none are given: the map's own stride and the next finer one ((4, 8) at
    stride 8, (8, 16) at 16). On photos of another site the stride-16 stage's ImageNet features carry the
    training site's look more than a crown's: at stride 8, levels 4 and 8 found more of another site's
    crowns than 8 and 16 (docs/quality.md), and the backbone stops after its stride-8 stage."""
    return (stride // 2, stride)


def build_feature_maps(name: str, weights: str | None = None, levels: Sequence[int] | None = None,
                       stride: int = 16) -> nn.Module:
    """The feature-map backbone called ``name`` (one of CONV_HEAD_BACKBONES), tapped at ``levels``
    (strides; None: :func:`default_levels`) and fused at ``stride``; weights as for
    :func:`multibox.modeling.backbones.build_backbone`."""
    levels = default_levels(stride) if levels is None else tuple(levels)
    if name not in CONV_HEAD_BACKBONES:
        raise UserError(f"backbone {name!r}: the conv head needs one of {', '.join(CONV_HEAD_BACKBONES)} "
                        "(or model.head: fc)")
    if stride not in levels:
        raise UserError(f"model.stride {stride}: must be one of model.levels {list(levels)}")
    if name == "tiny":
        return TinyMaps(levels, stride)
    from multibox.modeling.backbones import efficientnet_lite_net

    return LiteMaps(efficientnet_lite_net(name, weights), levels, stride)
