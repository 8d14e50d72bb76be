"""The per-image assignment of Eqs. 4-5, solved exactly with scipy's linear_sum_assignment.

Expanding Eq. 3 for one image: assigning prediction i to ground truth j changes the loss, relative to
leaving i unassigned, by

    alpha/2 * ||l_i - g_j||^2 - log c_i + log(1 - c_i)  =  alpha/2 * ||l_i - g_j||^2 - z_i

where c_i = sigmoid(z_i) (the two log terms of Eq. 2 reduce to the negated logit). Eq. 5 asks every
ground truth to take exactly one prediction and no prediction to take two ground truths, so the
optimum of Eq. 4 is the minimum-cost assignment on that K x M matrix (K >= M).

Prior matching (§3): the ground truth is matched to the K priors instead of the predictions. That
cost, alpha/2 * ||p_i - g_j||^2, does not depend on the network, so it is computed per sample in the
data pipeline (:func:`match_priors`) and costs the training step nothing.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ["assignment_cost", "solve_assignment", "match_predictions", "match_priors"]


def assignment_cost(pred_boxes: Tensor, pred_logits: Tensor | None, gt_boxes: Tensor, alpha: float) -> Tensor:
    """Cost of assigning each prediction to each ground truth, batched.

    pred_boxes: Tensor[B, K, 4]; pred_logits: Tensor[B, K] or None (prior matching: location only);
    gt_boxes: Tensor[B, M, 4]. Returns Tensor[B, K, M].
    """
    cost = 0.5 * alpha * torch.cdist(pred_boxes.float(), gt_boxes.float()).square()  # [B, K, M]
    if pred_logits is not None:
        cost = cost - pred_logits.float()[..., None]  # -log c + log(1 - c) = -z
    return cost


def solve_assignment(cost: np.ndarray) -> np.ndarray:
    """Optimal assignment for one image: cost float[K, M] -> int64[M], the prediction index per
    ground truth (-1 where none: only when M > K, the surplus ground truth stays unmatched)."""
    match = np.full(cost.shape[1], -1, dtype=np.int64)
    if cost.size:
        rows, cols = linear_sum_assignment(cost)
        match[cols] = rows
    return match


@torch.no_grad()
def match_predictions(pred_boxes: Tensor, pred_logits: Tensor, gt_boxes: Tensor, gt_count: Tensor,
                      alpha: float) -> Tensor:
    """Eq. 4 for a batch: one cost tensor, one device-to-host copy, a loop over images for scipy.

    pred_boxes: Tensor[B, K, 4]; pred_logits: Tensor[B, K]; gt_boxes: Tensor[B, M, 4] padded at the
    end; gt_count: Tensor[B], the real M of each image. Returns Tensor[B, M] int64 on pred_boxes'
    device: the prediction assigned to each ground truth, -1 for padding.
    """
    cost = assignment_cost(pred_boxes, pred_logits, gt_boxes, alpha).cpu().numpy()  # the one transfer
    counts = gt_count.tolist()
    match = np.full(gt_boxes.shape[:2], -1, dtype=np.int64)
    for b, m in enumerate(counts):  # scipy solves one matrix at a time
        match[b, :m] = solve_assignment(cost[b, :, :m])
    return torch.from_numpy(match).to(pred_boxes.device)


def match_priors(priors: Tensor, gt_boxes: Tensor) -> Tensor:
    """Prior matching for one sample: priors Tensor[K, 4], gt_boxes Tensor[M, 4] -> Tensor[M] int64.

    The cost is ||p_i - g_j||^2 (alpha only scales it, which does not change the optimum).
    """
    cost = torch.cdist(priors.float(), gt_boxes.float()).square()  # [K, M]
    return torch.from_numpy(solve_assignment(cost.numpy()))
