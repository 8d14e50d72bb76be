"""The DeepMultiBox localizer network (§3 "Model"), with the paper's head or a convolutional one.

:class:`MultiBox` (the paper's): backbone -> last hidden layer -> two linear outputs: K x 4 location
residuals, added to the K priors ("learn a residual to a prior", §3 "Training Details"), and K
confidence logits (c_i = sigmoid).

:class:`GridMultiBox` (``head: conv``): backbone feature map -> :class:`ConvHead` -> per cell, A
residuals to priors tied to that cell (:func:`multibox.modeling.priors.grid_priors`) and A logits; the
residuals are in units of the priors' sizes. Both return the same dict and train with the same §3 loss;
their logits pass through a :class:`ScoreCalibration` (identity until fitted after training).
``forward`` returns the same dict in train and eval mode; matching, loss and post-processing live in
their own modules. Input normalization is part of the model, so exported graphs take plain RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from multibox.modeling.backbones import build_backbone
from multibox.modeling.calibration import ScoreCalibration
from multibox.modeling.feature_maps import build_feature_maps
from multibox.modeling.heads import ConvHead, FCHead
from multibox.modeling.priors import grid_priors

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
        self.calibration = ScoreCalibration()  # identity until fitted on validation images after training

    @property
    def num_boxes(self) -> int:
        return self.priors.shape[0]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.dtype == torch.uint8:
            images = images.float() / 255
        x = (images - self.mean) / self.std
        residuals, logits = self.head(self.backbone(x))
        return {"pred_boxes": self.priors + residuals, "pred_logits": self.calibration(logits)}


def build_model(backbone: str, priors: Tensor, weights: str | None = None, hidden_dim: int = 1024,
                grid: int = 4) -> MultiBox:
    """A MultiBox localizer with the named backbone and the given priors Tensor[K, 4]."""
    return MultiBox(build_backbone(backbone, weights, grid), priors, hidden_dim)


class GridMultiBox(nn.Module):
    """images Tensor[B, 3, S, S] (RGB in [0, 1], or uint8) -> {"pred_boxes": Tensor[B, K, 4] xyxy in
    [0, 1] of the input, "pred_logits": Tensor[B, K]}, K = (S / stride)^2 x A.

    shapes: Tensor[A, 2], the prior (width, height) per cell in pixels of the S x S input, saved with
    the weights. :meth:`forward_features` runs the head alone on a backbone feature map (or a window of
    one: a crop of the image is a window of the map, up to the borders), for training on cached features.
    feature_norm: "dataset" (the head's input standardized with statistics of the training maps) or
    "image" (each image's map first standardized per channel by its own statistics, so a photo of
    another site, light or sensor reaches the head on the same scale: instance normalization against
    domain shift; docs/quality.md measures it). dropout: the head's input channel dropout while training
    (:class:`multibox.modeling.heads.ConvHead`).
    """

    def __init__(self, backbone: nn.Module, shapes: Tensor, image_size: int, hidden: int = 128, depth: int = 2,
                 head: str = "dense", feature_norm: str = "dataset", dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone, self.image_size, self.stride = backbone, image_size, backbone.stride
        self.feature_norm = feature_norm
        self.head = ConvHead(backbone.out_channels, shapes.shape[0], hidden, depth, kind=head, dropout=dropout)
        self.register_buffer("shapes", shapes.detach().clone().float())
        # Per-channel standardization of the features the head sees (set from the training maps when
        # they are cached; identity otherwise): the frozen backbone's channels differ in scale by 100x.
        self.register_buffer("feature_mean", torch.zeros(backbone.out_channels))
        self.register_buffer("feature_std", torch.ones(backbone.out_channels))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.calibration = ScoreCalibration()  # identity until fitted on validation images after training

    def grid_priors(self, rows: int, cols: int) -> Tensor:
        """Priors Tensor[rows * cols * A, 4] of a rows x cols map, in [0, 1] of its frame."""
        return grid_priors((rows, cols), self.stride, self.shapes, (cols * self.stride, rows * self.stride)).to(self.shapes)

    @property
    def priors(self) -> Tensor:
        """The K priors at the configured input size (the priors baseline, export, reports)."""
        g = self.image_size // self.stride
        return self.grid_priors(g, g)

    @property
    def num_boxes(self) -> int:
        return self.priors.shape[0]

    def forward_features(self, features: Tensor) -> dict[str, Tensor]:
        """features Tensor[B, C, G_r, G_c] -> the output dict, boxes in [0, 1] of the map's frame."""
        features = (features - self.feature_mean[:, None, None]) / self.feature_std[:, None, None]
        residuals, logits = self.head(features)
        priors = self.grid_priors(features.shape[-2], features.shape[-1])  # [K, 4]
        size = (priors[:, 2:] - priors[:, :2]).repeat(1, 2)  # [K, 4]: residuals in units of prior size
        return {"pred_boxes": priors + residuals * size, "pred_logits": self.calibration(logits)}

    def features(self, images: Tensor) -> Tensor:
        """The backbone's feature map Tensor[B, C, S/stride, S/stride] of images (normalized here)."""
        return self.features_from_front(self.front(images))

    def front(self, images: Tensor) -> Tensor:
        """The backbone up to its finest level (what partial fine-tuning caches): Tensor[B, C_f, S/f, S/f]."""
        if images.dtype == torch.uint8:
            images = images.float() / 255
        x = (images - self.mean) / self.std
        return self.backbone.front(x) if hasattr(self.backbone, "front") else x  # a backbone without a split: all "back"

    def features_from_front(self, front: Tensor) -> Tensor:
        """:meth:`front`'s output (or a window of it) -> the head's input map (see :meth:`features`)."""
        maps = self.backbone.back(front) if hasattr(self.backbone, "back") else self.backbone(front)
        if self.feature_norm == "image":
            maps = (maps - maps.mean((-2, -1), keepdim=True)) / (maps.std((-2, -1), keepdim=True) + 1e-5)
        return maps

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.forward_features(self.features(images))


def build_grid_model(backbone: str, shapes: Tensor, image_size: int, weights: str | None = None,
                     levels: Sequence[int] | None = None, stride: int = 16, hidden: int = 128,
                     depth: int = 2, head: str = "dense", feature_norm: str = "dataset", dropout: float = 0.0) -> GridMultiBox:
    """A conv-head localizer with the named feature-map backbone and prior shapes Tensor[A, 2] (pixels);
    levels: the backbone strides fused (None: :func:`multibox.modeling.feature_maps.default_levels`);
    head: the ConvHead's kind ("dense" or "separable"); feature_norm, dropout: see :class:`GridMultiBox`."""
    return GridMultiBox(build_feature_maps(backbone, weights, levels, stride), shapes, image_size, hidden, depth,
                        head, feature_norm, dropout)
