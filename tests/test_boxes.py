"""Box conventions: format round trips, crop <-> image mapping, clipping."""

import torch

from multibox import boxes as B


def random_xyxy(n: int, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(n, 2, generator=g), torch.rand(n, 2, generator=g)
    return torch.cat([torch.minimum(a, b), torch.maximum(a, b) + 0.01], dim=1) * scale


def test_format_round_trips():
    xyxy = random_xyxy(50, 300.0).reshape(5, 10, 4)
    assert torch.allclose(B.xywh_to_xyxy(B.xyxy_to_xywh(xyxy)), xyxy, atol=1e-4)
    assert torch.allclose(B.cxcywh_to_xyxy(B.xyxy_to_cxcywh(xyxy)), xyxy, atol=1e-4)
    assert B.xyxy_to_xywh(torch.tensor([10.0, 20, 40, 80])).tolist() == [10, 20, 30, 60]


def test_normalize_round_trip():
    px = random_xyxy(20, 500.0)
    assert torch.allclose(B.denormalize(B.normalize(px, 640, 480), 640, 480), px, atol=1e-3)
    assert torch.allclose(B.normalize(torch.tensor([64.0, 48, 320, 240]), 640, 480), torch.tensor([0.1, 0.1, 0.5, 0.5]))


def test_center_square_crop():
    assert B.center_square_crop(640, 480).tolist() == [80, 0, 560, 480]
    assert B.center_square_crop(300, 500).tolist() == [0, 100, 300, 400]


def test_crop_to_image_round_trip_batched():
    crops = torch.tensor([[80.0, 0, 560, 480], [0, 100, 300, 400], [10, 20, 110, 120]])  # [B, 4]
    norm = random_xyxy(3 * 7).reshape(3, 7, 4)
    px = B.crop_to_image(norm, crops)
    assert torch.allclose(B.image_to_crop(px, crops), norm, atol=1e-5)
    # Hand check: the crop's full extent maps to the crop itself.
    full = B.crop_to_image(torch.tensor([[[0.0, 0, 1, 1]]]), crops[:1])
    assert full.tolist() == [[[80.0, 0, 560, 480]]]
    # Batched == per-image.
    for b in range(3):
        assert torch.allclose(B.crop_to_image(norm[b], crops[b]), px[b])


def test_clip_boxes_per_image_sizes():
    boxes = torch.tensor([[[-5.0, -5, 700, 500]], [[-1.0, 10, 50, 900]]])  # [B=2, 1, 4]
    w = torch.tensor([[640.0], [300.0]])
    h = torch.tensor([[480.0], [400.0]])
    assert B.clip_boxes(boxes, w, h).tolist() == [[[0, 0, 640, 480]], [[0, 10, 50, 400]]]


def test_batched_iou_matches_torchvision():
    a, b = random_xyxy(12).reshape(2, 6, 4), random_xyxy(8, seed=1).reshape(2, 4, 4)
    iou = B.batched_box_iou(a, b)
    assert iou.shape == (2, 6, 4)
    for i in range(2):
        assert torch.allclose(iou[i], B.box_iou(a[i], b[i]))


def test_valid_boxes():
    boxes = torch.tensor([[0.0, 0, 1, 1], [1, 0, 1, 1], [0, 0, float("nan"), 1], [0.5, 0.5, 0.2, 0.9]])
    assert B.valid_boxes(boxes).tolist() == [True, False, False, False]
