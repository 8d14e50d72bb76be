"""The loss (Eqs. 1-3): autograd gradients against the closed forms of Eqs. 6-7, and normalisation."""

import torch

from multibox.modeling.losses import MultiBoxLoss, weighted_total

ALPHA = 0.3


def make_case(seed=0, b=2, k=6, m=3):
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(b, k, 4, generator=g)
    conf = torch.rand(b, k, generator=g) * 0.8 + 0.1  # c in (0.1, 0.9)
    gt = torch.rand(b, m, 4, generator=g)
    count = torch.tensor([m, m - 1])
    return boxes, conf, gt, count


def test_gradients_match_eqs_6_and_7():
    boxes, conf, gt, count = make_case()
    loss = MultiBoxLoss(ALPHA, prior_matching=False)
    l = boxes.clone().requires_grad_(True)
    c = conf.clone().requires_grad_(True)
    logits = torch.log(c / (1 - c))  # so that sigmoid(logits) == c and autograd reaches c
    outputs = {"pred_boxes": l, "pred_logits": logits}
    targets = {"boxes": gt, "count": count}
    match = loss.match({"pred_boxes": boxes, "pred_logits": logits.detach()}, targets)
    terms = loss(outputs, targets)
    weighted_total(terms, loss.weights()).backward()
    # x_ij from the same assignment, as dense [B, K, M]
    x = torch.zeros(boxes.shape[0], boxes.shape[1], gt.shape[1])
    for bi in range(x.shape[0]):
        for j in range(int(count[bi])):
            x[bi, match[bi, j], j] = 1
    batch = boxes.shape[0]
    eq6 = (x[..., None] * (boxes[:, :, None] - gt[:, None])).sum(2)  # sum_j (l_i - g_j) x_ij, [B, K, 4]
    xi = x.sum(-1)
    eq7 = (conf - xi) / (conf * (1 - conf))  # (sum_j x_ij - c_i) with the sign of dF/dc_i
    assert torch.allclose(l.grad, ALPHA * eq6 / batch, atol=1e-6)
    assert torch.allclose(c.grad, eq7 / batch, atol=1e-5)


def test_terms_are_unweighted_and_normalised_per_image():
    boxes, conf, gt, count = make_case(1, b=1, k=4, m=1)
    prior_match = torch.tensor([[2]])
    loss = MultiBoxLoss(ALPHA, prior_matching=True)
    logits = torch.log(conf / (1 - conf))
    terms = loss({"pred_boxes": boxes, "pred_logits": logits}, {"boxes": gt, "count": count[:1], "prior_match": prior_match})
    # With prior matching the location term uses the matched prior's slot (2), as §3 describes.
    expected_loc = 0.5 * ((boxes[0, 2] - gt[0, 0]) ** 2).sum()
    x = torch.tensor([0.0, 0, 1, 0])
    expected_conf = -(x * conf[0].log() + (1 - x) * (1 - conf[0]).log()).sum()
    assert torch.allclose(terms["loc"], expected_loc)
    assert torch.allclose(terms["conf"], expected_conf, atol=1e-5)
    total = weighted_total(terms, loss.weights())
    assert torch.allclose(total, ALPHA * expected_loc + expected_conf, atol=1e-5)


def test_image_without_objects_only_pushes_confidences_down():
    boxes = torch.rand(1, 5, 4, requires_grad=True)
    logits = torch.zeros(1, 5, requires_grad=True)
    loss = MultiBoxLoss(ALPHA, prior_matching=False)
    terms = loss({"pred_boxes": boxes, "pred_logits": logits}, {"boxes": torch.zeros(1, 0, 4), "count": torch.tensor([0])})
    assert terms["loc"].item() == 0.0
    weighted_total(terms, loss.weights()).backward()
    assert torch.allclose(logits.grad, torch.full((1, 5), 0.5))  # c - x with x = 0
    assert boxes.grad is None or (boxes.grad == 0).all()
