"""Test-time augmentation: every transform's boxes map back exactly, and the merged detections of an
equivariant model are the plain model's."""

import pytest
import torch
from torch import nn

from multibox.engine.feature_cache import dihedral
from multibox.inference.localizer import Localizer
from multibox.inference.tta import TTA_MODES, transform_boxes, tta_forward, untransform_boxes
from multibox.errors import UserError


class BrightBox(nn.Module):
    """A 'network' whose one box is the bounding box of the bright pixels of its input, exactly."""

    def forward(self, images):
        mask = images.float().mean(1) > 127  # [B, S, S]
        side = images.shape[-1]
        rows, cols = mask.any(2), mask.any(1)  # [B, S]
        idx = torch.arange(side)
        x0 = torch.where(cols, idx, side).min(1).values
        x1 = torch.where(cols, idx + 1, 0).max(1).values
        y0 = torch.where(rows, idx, side).min(1).values
        y1 = torch.where(rows, idx + 1, 0).max(1).values
        boxes = torch.stack([x0, y0, x1, y1], -1).float()[:, None] / side  # [B, 1, 4]
        return {"pred_boxes": boxes, "pred_logits": torch.zeros(images.shape[0], 1)}


def image_with_box(side=32, box=(3, 5, 13, 24)):
    image = torch.zeros(1, 3, side, side, dtype=torch.uint8)
    x0, y0, x1, y1 = box
    image[..., y0:y1, x0:x1] = 255
    return image, torch.tensor([box], dtype=torch.float32) / side


def test_box_transforms_follow_the_image_transform_and_invert():
    image, box = image_with_box()
    model = BrightBox()
    for t in range(8):
        seen = model(dihedral(image, t))["pred_boxes"][0]
        assert torch.allclose(seen, transform_boxes(box, t))  # the boxes move as the pixels do
        assert torch.allclose(untransform_boxes(seen, t), box)  # and map back exactly


@pytest.mark.parametrize("mode", list(TTA_MODES))
def test_every_transforms_box_maps_back_to_the_same_box(mode):
    image, box = image_with_box()
    out = tta_forward(BrightBox(), image, mode)
    assert out["pred_boxes"].shape == (1, len(TTA_MODES[mode]), 4) and out["pred_logits"].shape == (1, len(TTA_MODES[mode]))
    assert torch.allclose(out["pred_boxes"][0], box.expand(len(TTA_MODES[mode]), 4))


def test_the_localizer_with_tta_merges_the_copies_by_one_nms():
    image, _ = image_with_box(side=64, box=(10, 6, 30, 50))
    plain = Localizer(BrightBox(), 64).predict(image[0], top_k=10)
    for mode in TTA_MODES:
        boxes, scores = Localizer(BrightBox(), 64, tta=mode).predict(image[0], top_k=10)
        assert len(boxes) == 1  # the copies agree: NMS keeps one
        assert torch.allclose(boxes, plain[0]) and torch.allclose(scores, plain[1])


def test_an_unknown_tta_mode_is_one_line():
    with pytest.raises(UserError, match="tta 'rot'"):
        Localizer(BrightBox(), 64, tta="rot")
