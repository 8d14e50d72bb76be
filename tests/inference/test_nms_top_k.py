"""NMS over the best few candidates keeps exactly the top k of NMS over all of them (postprocess.nms_top_k)."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import nms

from multibox.inference import postprocess
from multibox.inference.postprocess import nms_top_k, select


def random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 30 + 2
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


@pytest.mark.parametrize("iou", [0.5, 0.3])
@pytest.mark.parametrize("n,k,pre,seed", [(3000, 100, 50, 0), (3000, 5, 20, 1), (500, 400, 30, 2), (40, 100, 10, 3)])
def test_equals_the_full_nms(monkeypatch, n, k, pre, seed, iou):
    monkeypatch.setattr(postprocess, "PRE_NMS", pre)  # small, so the growing loop is exercised
    boxes, scores = random_boxes(n, seed)
    full = nms(boxes, scores, iou)[:k]
    fast = nms_top_k(boxes, scores, torch.arange(n), iou, k)
    assert torch.equal(fast, full)


def test_select_per_image_equals_the_full_nms(monkeypatch):
    monkeypatch.setattr(postprocess, "PRE_NMS", 8)
    boxes, scores = random_boxes(2 * 600, 4)
    dets = select(boxes.reshape(2, 600, 4), scores.reshape(2, 600), 0.5, 30)
    for i in range(2):
        b, s = boxes[i * 600 : (i + 1) * 600], scores[i * 600 : (i + 1) * 600]
        keep = nms(b, s, 0.5)[:30]
        assert torch.equal(dets[i]["boxes"], b[keep]) and torch.equal(dets[i]["scores"], s[keep])
