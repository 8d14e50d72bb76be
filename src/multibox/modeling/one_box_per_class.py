"""The paper's competitor in Table 2 and Fig. 5 (§4.4.2): one box per class.

"A careful re-implementation of the winning entry of ILSVRC-2012": one network that outputs, for
each of the C classes, one box, beside a C-way classifier of the whole image. Here: the same named
backbones as the localizer and the classifier (:func:`multibox.modeling.backbones.build_backbone`),
one hidden layer, then C + 1 class logits and C x 4 box coordinates.

Background: the class head has C + 1 outputs, background last (as :mod:`multibox.modeling.classifier`),
because our training inputs may hold no object (about 8 % of the synthetic scenes are empty, and §4.1
crops of real images can miss every object); without it such an input would have to be given to some
class. ILSVRC images always hold an object, so the paper's network needed none.

Boxes are residuals to one prior per class (the mean training box of that class, a buffer saved with the
weights), as the localizer's are residuals to its priors (§3), so training starts at a sensible box.

The output dict keeps the localizer's contract, so the localizer's inference (windows, truncation,
NMS, :class:`multibox.inference.localizer.Localizer`) runs it unchanged: "pred_logits" is the logit of
each class's softmax probability, so that sigmoid(pred_logits) = p(class c | image).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multibox.modeling.backbones import build_backbone
from multibox.modeling.localizer import IMAGENET_MEAN, IMAGENET_STD

WHOLE_IMAGE_PRIOR = (0.1, 0.1, 0.9, 0.9)  # a class without training boxes starts at a large central box


class OneBoxPerClass(nn.Module):
    """images Tensor[B, 3, S, S] (RGB in [0, 1], or uint8) -> {
    "pred_boxes": Tensor[B, C, 4] xyxy in [0, 1] of the input (box c is class c's),
    "pred_logits": Tensor[B, C], logit of p(class c) (sigmoid gives the softmax probability),
    "class_logits": Tensor[B, C + 1], the raw class head (background at index C), for the loss}.

    priors: Tensor[C, 4], each class's starting box, xyxy in [0, 1].
    """

    def __init__(self, backbone: nn.Module, priors: Tensor, hidden_dim: int = 1024, dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone, self.num_classes = backbone, priors.shape[0]
        width = hidden_dim or backbone.out_features
        hidden = [nn.Linear(backbone.out_features, hidden_dim), nn.ReLU(inplace=True)] if hidden_dim else []
        self.hidden = nn.Sequential(*hidden, nn.Dropout(dropout))
        self.cls = nn.Linear(width, self.num_classes + 1)
        self.loc = nn.Linear(width, self.num_classes * 4)
        nn.init.zeros_(self.loc.weight)  # start exactly at the priors
        nn.init.zeros_(self.loc.bias)
        self.register_buffer("priors", priors.detach().clone().float())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def num_boxes(self) -> int:
        """Boxes per image: one per class (the localizer's K)."""
        return self.num_classes

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.dtype == torch.uint8:
            images = images.float() / 255
        h = self.hidden(self.backbone((images - self.mean) / self.std))
        class_logits = self.cls(h)  # [B, C + 1]
        log_p = class_logits.log_softmax(-1)[:, : self.num_classes]  # [B, C]
        # logit(p) = log p - log(1 - p); log1p(-exp) stays finite as long as p < 1 in floating point
        pred_logits = log_p - torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))
        boxes = self.priors + self.loc(h).view(-1, self.num_classes, 4)  # [B, C, 4]
        return {"pred_boxes": boxes, "pred_logits": pred_logits, "class_logits": class_logits}


def class_priors(boxes: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Each class's mean box Tensor[C, 4] (boxes Tensor[N, 4] xyxy in [0, 1], labels Tensor[N] int64);
    :data:`WHOLE_IMAGE_PRIOR` for a class without boxes."""
    sums = torch.zeros(num_classes, 4).index_add_(0, labels, boxes.float())
    counts = torch.bincount(labels, minlength=num_classes).float()[:, None]
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.tensor(WHOLE_IMAGE_PRIOR))


def build_one_box_per_class(backbone: str, priors: Tensor, weights: str | None = None, hidden_dim: int = 1024,
                            grid: int = 4) -> OneBoxPerClass:
    """A one-box-per-class network with the named backbone over C = len(priors) classes."""
    return OneBoxPerClass(build_backbone(backbone, weights, grid), priors, hidden_dim)
