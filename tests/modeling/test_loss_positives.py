"""The conv head's loss options: location in ground-truth sizes, and positives by prior IoU (against a
brute-force loop), with the paper's terms unchanged when both are off."""

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from multibox.modeling.losses import MultiBoxLoss


def case(seed=0, b=3, k=12, m=4):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, k, 2, generator=g) * 0.7
    priors = torch.cat([xy[0], xy[0] + 0.1 + 0.2 * torch.rand(k, 2, generator=g)], 1)  # [K, 4]
    gt = priors[torch.randperm(k, generator=g)[:m]] + 0.02 * torch.randn(m, 4, generator=g)  # near some priors
    gt = gt.expand(b, -1, -1).clone()
    count = torch.tensor([m, m - 1, 0])
    match = torch.full((b, m), -1)
    for bi in range(b):  # one-to-one: ground truth j takes the nearest free prior (any valid assignment will do)
        free = torch.ones(k, dtype=torch.bool)
        for j in range(int(count[bi])):
            d = torch.cdist(priors, gt[bi, j : j + 1]).squeeze(1).masked_fill(~free, float("inf"))
            match[bi, j] = d.argmin()
            free[match[bi, j]] = False
    pred = priors + 0.03 * torch.randn(b, k, 4, generator=g)
    logits = torch.randn(b, k, generator=g)
    return priors, pred, logits, gt, count, match


def brute_force(priors, pred, logits, gt, count, match, t):
    """Per image, per prediction: positive iff assigned or prior IoU >= t with a real ground truth."""
    loc, conf = 0.0, 0.0
    for bi in range(pred.shape[0]):
        m = int(count[bi])
        iou = box_iou(priors, gt[bi, :m]) if m else torch.zeros(len(priors), 0)
        for i in range(pred.shape[1]):
            assigned = [j for j in range(m) if match[bi, j] == i]
            if assigned:
                j = assigned[0]
            elif m and iou[i].max() >= t:
                j = int(iou[i].argmax())
            else:
                conf += F.binary_cross_entropy_with_logits(logits[bi, i], torch.tensor(0.0))
                continue
            conf += F.binary_cross_entropy_with_logits(logits[bi, i], torch.tensor(1.0))
            size = (gt[bi, j, 2:] - gt[bi, j, :2]).repeat(2)
            loc += F.smooth_l1_loss(pred[bi, i] / size, gt[bi, j] / size, reduction="sum", beta=0.1)
    return loc / pred.shape[0], conf / pred.shape[0]


def test_iou_positives_and_box_loss_equal_a_brute_force_loop():
    for seed in range(3):
        priors, pred, logits, gt, count, match = case(seed)
        loss = MultiBoxLoss(1.0, True, "box", 0.3, priors)
        terms = loss({"pred_boxes": pred, "pred_logits": logits}, {"boxes": gt, "count": count, "prior_match": match})
        loc, conf = brute_force(priors, pred, logits, gt, count, match, 0.3)
        assert torch.allclose(terms["loc"], loc, atol=1e-5)
        assert torch.allclose(terms["conf"], conf, atol=1e-4)


def test_iou_positives_add_to_the_assignment():
    priors, pred, logits, gt, count, match = case(1)
    targets = {"boxes": gt, "count": count, "prior_match": match}
    plain = MultiBoxLoss(1.0, True, "box", None)
    wide = MultiBoxLoss(1.0, True, "box", 0.3, priors)
    p_plain, _ = plain.assignment(pred, gt, match)
    p_wide, _ = wide.assignment(pred, gt, match)
    assert (p_plain <= p_wide).all()  # every assigned prediction stays a positive
    assert p_wide.sum() > p_plain.sum()  # and more join
    assert p_plain[2].sum() == 0 and p_wide[2].sum() == 0  # the image without objects has none


def test_box_loss_is_scale_free_and_the_image_loss_is_eq_1():
    priors, pred, logits, gt, count, match = case(2)
    targets = {"boxes": gt, "count": count, "prior_match": match}
    box = MultiBoxLoss(1.0, True, "box", None)
    half = box({"pred_boxes": pred / 2, "pred_logits": logits}, targets | {"boxes": gt / 2})["loc"]
    assert torch.allclose(box({"pred_boxes": pred, "pred_logits": logits}, targets)["loc"], half, atol=1e-5)
    image = MultiBoxLoss(0.3, True, "image", None)({"pred_boxes": pred, "pred_logits": logits}, targets)["loc"]
    expected = sum(0.5 * (pred[b, match[b, j]] - gt[b, j]).square().sum()
                   for b in range(3) for j in range(int(count[b]))) / 3
    assert torch.allclose(image, expected, atol=1e-6)


def test_a_prediction_on_its_ground_truth_has_no_location_gradient():
    priors, pred, logits, gt, count, match = case(3)
    pred = pred.clone()
    for b in range(3):
        for j in range(int(count[b])):
            pred[b, match[b, j]] = gt[b, j]
    pred.requires_grad_(True)
    loss = MultiBoxLoss(1.0, True, "box", None)
    loss({"pred_boxes": pred, "pred_logits": logits}, {"boxes": gt, "count": count, "prior_match": match})["loc"].backward()
    assert pred.grad.abs().max() == 0


def test_a_batch_without_objects_trains_confidences_down_under_either_matching():
    priors, pred, logits, *_ = case(4)
    empty = {"boxes": torch.zeros(3, 0, 4), "count": torch.zeros(3, dtype=torch.int64),
             "prior_match": torch.zeros(3, 0, dtype=torch.int64)}
    for prior_matching in (True, False):
        loss = MultiBoxLoss(1.0, prior_matching, "box", 0.5, priors)
        terms = loss({"pred_boxes": pred, "pred_logits": logits}, empty)
        expected = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="sum") / 3
        assert terms["loc"] == 0 and torch.allclose(terms["conf"], expected)
