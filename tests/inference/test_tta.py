"""Test-time augmentation: every transform's boxes map back exactly, and the merged detections of an
equivariant model are the plain model's."""

import pytest
import torch
from torch import nn

from multibox.engine.feature_cache import dihedral
from multibox.inference.localizer import Localizer
from multibox.config import TTA_MODES
from multibox.inference.tta import TRANSFORMS, transform_boxes, tta_forward, untransform_boxes
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
    n = len(TRANSFORMS[mode])
    assert out["pred_boxes"].shape == (1, n, 4) and out["pred_logits"].shape == (1, n)
    assert torch.allclose(out["pred_boxes"][0], box.expand(n, 4))


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


def test_detect_tta_flag_reaches_the_localizer(tmp_path, capsys):
    import json

    from fixtures.models import tiny_config
    from PIL import Image

    from multibox.cli import main
    from multibox.engine.trainer import train

    cfg = tiny_config()
    cfg.train.steps = 1
    model = train(cfg, tmp_path / "loc")
    Image.frombytes("RGB", (48, 40), bytes(range(256)) * 23 + bytes(range(64))).save(tmp_path / "a.png")
    assert main(["detect", "--model", str(model), "--out", str(tmp_path / "det"), "--device", "cpu", "--top-k", "5",
                 "--tta", "flip", str(tmp_path / "a.png")]) == 0
    entry = json.loads((tmp_path / "det" / "detections.json").read_text())[0]
    boxes, scores = Localizer.from_checkpoint(model, "cpu", tta="flip").predict(tmp_path / "a.png", top_k=5)
    assert torch.allclose(torch.tensor(entry["boxes"]), boxes, atol=1e-2)
    assert torch.allclose(torch.tensor(entry["scores"]), scores, rtol=1e-3)
