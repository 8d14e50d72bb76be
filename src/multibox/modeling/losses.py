"""The training objectives: the localizer's, Eqs. 1-3 (F = alpha * F_match + F_conf), and the
classifier's cross-entropy (§4.2.1).

For one image with assignment x (x_ij = 1 iff prediction i takes ground truth j):

    F_match = 1/2 * sum_ij x_ij ||l_i - g_j||^2                              (Eq. 1)
    F_conf  = -sum_i [ x_i log c_i + (1 - x_i) log(1 - c_i) ],  x_i = sum_j x_ij   (Eq. 2)

Normalisation: each term is summed over the image's predictions (Eqs. 1-2 as written) and averaged
over the images of the batch, so the gradient of one image equals Eqs. 6-7 divided by B. The loss
returns the unweighted terms; :func:`weighted_total` applies the weights in one place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multibox.modeling.matcher import match_predictions

__all__ = ["ClassifierLoss", "MultiBoxLoss", "OneBoxPerClassLoss", "weighted_total"]


def weighted_total(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """sum_t weights[t] * terms[t] (Eq. 3 with weights {"loc": alpha, "conf": 1})."""
    return sum(weights[name] * value for name, value in terms.items())


class MultiBoxLoss(nn.Module):
    """Matches predictions to ground truth and returns {"loc": F_match, "conf": F_conf}.

    alpha: Eq. 3's balance (§4.1 uses 0.3); it enters the matching cost, while the returned terms
    stay unweighted. prior_matching: use the assignment to priors that the data pipeline computed
    (targets["prior_match"]) instead of matching the current predictions (§3).
    """

    def __init__(self, alpha: float = 0.3, prior_matching: bool = True) -> None:
        super().__init__()
        self.alpha = alpha
        self.prior_matching = prior_matching

    def weights(self) -> dict[str, float]:
        return {"loc": self.alpha, "conf": 1.0}

    def match(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """Tensor[B, M] int64: the prediction slot of each ground truth, -1 for padding."""
        if self.prior_matching:
            return targets["prior_match"]
        return match_predictions(outputs["pred_boxes"].detach(), outputs["pred_logits"].detach(),
                                 targets["boxes"], targets["count"], self.alpha)

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """outputs: pred_boxes Tensor[B, K, 4], pred_logits Tensor[B, K].
        targets: boxes Tensor[B, M, 4] (xyxy in [0, 1], padded), count Tensor[B],
        prior_match Tensor[B, M] (with prior matching)."""
        pred_boxes, logits = outputs["pred_boxes"], outputs["pred_logits"]
        batch = pred_boxes.shape[0]
        match = self.match(outputs, targets)  # [B, M]
        valid = match >= 0  # [B, M]
        slot = match.clamp(min=0)
        matched = pred_boxes.gather(1, slot[..., None].expand(-1, -1, 4))  # [B, M, 4]
        sq_err = (matched - targets["boxes"].to(matched)).square().sum(-1)  # [B, M]
        loc = 0.5 * (sq_err * valid).sum() / batch
        assigned = torch.zeros_like(logits).scatter_add_(1, slot, valid.to(logits.dtype))  # x_i, [B, K]
        conf = F.binary_cross_entropy_with_logits(logits, assigned, reduction="sum") / batch
        return {"loc": loc, "conf": conf}


class ClassifierLoss(nn.Module):
    """Cross-entropy over the C + 1 classes, averaged over the batch: {"cls": loss} (unweighted)."""

    def weights(self) -> dict[str, float]:
        return {"cls": 1.0}

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """outputs: logits Tensor[B, C + 1]; targets: labels Tensor[B] int64 in 0..C (C = background)."""
        return {"cls": F.cross_entropy(outputs["logits"], targets["labels"])}


class OneBoxPerClassLoss(nn.Module):
    """The one-box-per-class network's objective (§4.4.2's competitor): {"cls": cross-entropy over the
    C + 1 classes, "loc": class-conditional box regression} (unweighted; :meth:`weights` weighs them).

    cls: the target distribution is uniform over the classes present in the image (an image of several
    classes is all of them at once), background (index C) for an image without objects.
    loc: only the box outputs of the image's true classes regress, each to the nearest object of its
    class, 1/2 ||l_c - g||^2 (Eq. 1's form) summed over the image's classes and averaged over the batch;
    the other classes' boxes get no gradient (they have nothing to be compared with).
    """

    def __init__(self, box_weight: float = 1.0) -> None:
        super().__init__()
        self.box_weight = box_weight

    def weights(self) -> dict[str, float]:
        return {"cls": 1.0, "loc": self.box_weight}

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """outputs: pred_boxes Tensor[B, C, 4], class_logits Tensor[B, C + 1]. targets: boxes Tensor[B, M, 4]
        (xyxy in [0, 1], padded), labels Tensor[B, M] int64 (-1 for padding)."""
        boxes, logits, labels = outputs["pred_boxes"], outputs["class_logits"], targets["labels"]
        b, c = boxes.shape[:2]
        valid = labels >= 0  # [B, M]
        slot = labels.clamp(min=0)
        present = torch.zeros(b, c + 1, device=logits.device).scatter_add_(1, slot, valid.to(logits.dtype)) > 0
        present[:, c] = ~valid.any(1)  # no object: background
        present = present.to(logits.dtype)
        cls = F.cross_entropy(logits, present / present.sum(1, keepdim=True))
        guess = boxes.gather(1, slot[..., None].expand(-1, -1, 4))  # [B, M, 4]: the box of each object's class
        sq_err = (guess - targets["boxes"].to(guess)).square().sum(-1)  # [B, M]
        sq_err = torch.where(valid, sq_err, torch.full_like(sq_err, torch.inf))
        nearest = torch.full((b, c), torch.inf, device=boxes.device, dtype=sq_err.dtype)
        nearest = nearest.scatter_reduce(1, slot, sq_err, reduce="amin")  # [B, C]: inf for absent classes
        loc = 0.5 * torch.where(nearest.isfinite(), nearest, torch.zeros_like(nearest)).sum() / b
        return {"cls": cls, "loc": loc}
