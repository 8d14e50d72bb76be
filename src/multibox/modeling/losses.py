"""The training objectives: the localizer's, Eqs. 1-3 (F = alpha * F_match + F_conf), and the
classifier's cross-entropy (§4.2.1).

For one image with assignment x (x_ij = 1 iff prediction i takes ground truth j):

    F_match = 1/2 * sum_ij x_ij ||l_i - g_j||^2                              (Eq. 1)
    F_conf  = -sum_i [ x_i log c_i + (1 - x_i) log(1 - c_i) ],  x_i = sum_j x_ij   (Eq. 2)

Normalisation: each term is summed over the image's predictions (Eqs. 1-2 as written) and averaged
over the images of the batch, so the gradient of one image equals Eqs. 6-7 divided by B. The loss
returns the unweighted terms; :func:`weighted_total` applies the weights in one place.

Two departures, off in the paper preset and on by default for the conv head (docs/quality.md measures
them on photos of other sites):

* ``box_loss="box"``: the location error in units of the ground truth's width and height, smooth L1
  (Fast R-CNN's), instead of Eq. 1's squared error in image fractions. A 30 px crown in a 700 px input
  makes Eq. 1's term ~1e-3 beside a confidence term of ~10, so boxes barely tighten.
* ``positive_iou=t``: besides §3's one-to-one assignment, every prediction whose prior overlaps a
  ground truth at IoU >= t is a positive too, in both terms, toward that ground truth (SSD's matching).
  With a translation-invariant head, the neighbours of a matched prior see nearly the same features; §3
  trains them as negatives, which a conv head cannot tell apart from the match, and the scores stop
  ranking. The priors are fixed, so each prediction's role is too (matching the moving predictions
  instead made the positives grow with training and the loss with them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multibox.boxes import batched_box_iou
from multibox.modeling.matcher import match_predictions

__all__ = ["ClassifierLoss", "MultiBoxLoss", "OneBoxPerClassLoss", "weighted_total"]


def weighted_total(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """sum_t weights[t] * terms[t] (Eq. 3 with weights {"loc": alpha, "conf": 1})."""
    return sum(weights[name] * value for name, value in terms.items())


class MultiBoxLoss(nn.Module):
    """Matches predictions to ground truth and returns {"loc": F_match, "conf": F_conf}.

    alpha: Eq. 3's balance (§4.1 uses 0.3); it enters the matching cost, while the returned terms
    stay unweighted. prior_matching: use the assignment to priors that the data pipeline computed
    (targets["prior_match"]) instead of matching the current predictions (§3). box_loss: "image"
    (Eq. 1) or "box" (smooth L1 in ground-truth sizes); positive_iou: None (§3) or the IoU of a prior with
    a ground truth above which its prediction is a positive besides the assignment (module docstring);
    priors: Tensor[K, 4], the priors the K predictions start from (needed with positive_iou).
    """

    def __init__(self, alpha: float = 0.3, prior_matching: bool = True, box_loss: str = "image",
                 positive_iou: float | None = None, priors: Tensor | None = None) -> None:
        super().__init__()
        if positive_iou is not None and priors is None:
            raise ValueError("positive_iou needs the priors")
        self.alpha, self.prior_matching = alpha, prior_matching
        self.box_loss, self.positive_iou, self.priors = box_loss, positive_iou, priors

    def weights(self) -> dict[str, float]:
        return {"loc": self.alpha, "conf": 1.0}

    def match(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """Tensor[B, M] int64: the prediction slot of each ground truth, -1 for padding."""
        if self.prior_matching:
            return targets["prior_match"]
        return match_predictions(outputs["pred_boxes"].detach(), outputs["pred_logits"].detach(),
                                 targets["boxes"], targets["count"], self.alpha)

    def assignment(self, pred_boxes: Tensor, gt_boxes: Tensor, match: Tensor) -> tuple[Tensor, Tensor]:
        """(positive Tensor[B, K] bool, ground truth index Tensor[B, K] of each positive): §3's
        one-to-one assignment, plus the predictions whose prior is over ``positive_iou`` with a ground truth."""
        valid = match >= 0  # [B, M]
        positive = torch.zeros(pred_boxes.shape[:2], dtype=torch.bool, device=pred_boxes.device)
        target = torch.zeros(pred_boxes.shape[:2], dtype=torch.int64, device=pred_boxes.device)
        if self.positive_iou is not None and gt_boxes.shape[1]:
            priors = self.priors.to(pred_boxes).expand(pred_boxes.shape[0], -1, -1)  # [B, K, 4]
            iou = batched_box_iou(priors, gt_boxes) * valid[:, None, :]  # [B, K, M], padding 0
            best, index = iou.max(-1)
            positive, target = best >= self.positive_iou, index
        # The assignment wins where a prediction is both. Padding (-1) writes to a scratch column K, so
        # every real slot is written once (the assignment is one-to-one).
        k = positive.shape[1]
        slot = torch.where(valid, match, k)
        rows = torch.arange(match.shape[1], device=match.device).expand_as(match)
        positive = F.pad(positive, (0, 1)).scatter(1, slot, valid)[:, :k]
        target = F.pad(target, (0, 1)).scatter(1, slot, rows)[:, :k]
        return positive, target

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """outputs: pred_boxes Tensor[B, K, 4], pred_logits Tensor[B, K].
        targets: boxes Tensor[B, M, 4] (xyxy in [0, 1], padded), count Tensor[B],
        prior_match Tensor[B, M] (with prior matching)."""
        pred_boxes, logits = outputs["pred_boxes"], outputs["pred_logits"]
        gt, match = targets["boxes"].to(pred_boxes), self.match(outputs, targets)
        if gt.shape[1] == 0:  # no object in the batch: one dummy ground truth that no prediction takes
            gt, match = pred_boxes.new_zeros(gt.shape[0], 1, 4), match.new_full((gt.shape[0], 1), -1)
        positive, target = self.assignment(pred_boxes, gt, match)
        goal = gt.gather(1, target[..., None].expand(-1, -1, 4))  # [B, K, 4]: each prediction's ground truth
        loc = self.location(pred_boxes, goal)  # [B, K]
        batch = pred_boxes.shape[0]
        conf = F.binary_cross_entropy_with_logits(logits, self.confidence_targets(positive, pred_boxes, goal).to(logits),
                                                  reduction="sum") / batch
        return {"loc": (loc * positive).sum() / batch, "conf": conf}

    def confidence_targets(self, positive: Tensor, pred_boxes: Tensor, goal: Tensor) -> Tensor:
        """Eq. 2's x_i, Tensor[B, K]: 1 for a positive, 0 otherwise (``pred_boxes`` and each prediction's
        ground truth ``goal`` Tensor[B, K, 4] are there for targets that grade the positives)."""
        return positive

    def location(self, pred: Tensor, goal: Tensor) -> Tensor:
        """Per-prediction location error Tensor[B, K] of pred vs goal Tensor[B, K, 4]."""
        if self.box_loss == "image":
            return 0.5 * (pred - goal).square().sum(-1)  # Eq. 1
        size = (goal[..., 2:] - goal[..., :2]).clamp(min=1e-6).repeat(1, 1, 2)  # [B, K, 4]: (w, h, w, h)
        return F.smooth_l1_loss(pred / size, goal / size, reduction="none", beta=0.1).sum(-1)


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
