"""Cached features: for a frozen backbone, a window of the whole image's map gives the head the same
input, outputs and loss as a crop of the image (a backbone with no border effects makes it exact)."""

import numpy as np
import torch
from torch import nn

from multibox.engine.feature_cache import CachedMap, CachedWindows, dihedral, dihedral_boxes, transforms
from multibox.modeling.localizer import GridMultiBox
from multibox.modeling.losses import MultiBoxLoss
from multibox.modeling.matcher import match_priors


class PooledBackbone(nn.Module):
    """Stride-16 average pooling and a 1 x 1 convolution: every cell sees only its own pixels."""

    stride, out_channels = 16, 6

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 1)

    def forward(self, x):
        return self.conv(nn.functional.avg_pool2d(x, 16))


def model() -> GridMultiBox:
    torch.manual_seed(0)
    net = GridMultiBox(PooledBackbone(), torch.tensor([[12.0, 12.0], [24.0, 20.0]]), image_size=64, hidden=8, depth=1)
    torch.nn.init.normal_(net.head.loc.weight, std=0.1)
    return net.eval()


def test_cached_window_step_equals_the_crop_step():
    net = model()
    image = torch.rand(1, 3, 64, 64)
    full = net.features(image)[0]  # [C, 4, 4]
    boxes = np.array([[20.0, 18.0, 40.0, 44.0], [50.0, 50.0, 63.0, 60.0]], np.float32)  # pixels of the 64 px input
    samples = CachedWindows([CachedMap(full, boxes)], cells=2, stride=16, priors=net.grid_priors(2, 2))
    rng = np.random.default_rng(3)
    window, window_boxes = samples.window(samples.maps[0], rng)
    oy, ox = np.random.default_rng(3).integers(0, 3, 2)  # the same draws: the window's offset in cells
    crop = image[..., 16 * oy : 16 * oy + 32, 16 * ox : 16 * ox + 32]
    via_crop, via_cache = net(crop), net.forward_features(window[None])
    torch.testing.assert_close(via_cache["pred_boxes"], via_crop["pred_boxes"])
    torch.testing.assert_close(via_cache["pred_logits"], via_crop["pred_logits"])
    expected = (boxes - np.array([ox, oy, ox, oy]) * 16).clip(0, 32)
    area, inside = np.prod(boxes[:, 2:] - boxes[:, :2], 1), np.prod((expected[:, 2:] - expected[:, :2]).clip(0), 1)
    np.testing.assert_allclose(window_boxes, expected[inside >= 0.5 * area] / 32, atol=1e-6)
    gt = torch.from_numpy(window_boxes.astype(np.float32))[None]
    if gt.shape[1]:
        targets = {"boxes": gt, "count": torch.tensor([gt.shape[1]]), "prior_match": match_priors(net.grid_priors(2, 2), gt[0])[None]}
        loss = MultiBoxLoss()
        torch.testing.assert_close(loss(via_cache, targets), loss(via_crop, targets))


def test_windows_are_keyed_and_padded_past_the_map():
    net = model()
    small = CachedMap(torch.ones(6, 1, 1).half(), np.array([[2.0, 2.0, 10.0, 12.0]], np.float32))
    samples = CachedWindows([small], cells=2, stride=16, priors=net.grid_priors(2, 2), seed=1)
    a, b = samples[(0, 3, 5)], samples[(0, 3, 5)]
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (6, 2, 2)
    assert a["image"][:, 0, 0].eq(1).all() and a["image"][:, 1:, :].eq(0).all()
    assert torch.allclose(a["boxes"], torch.tensor([[2.0, 2.0, 10.0, 12.0]]) / 32)
    assert a["prior_match"].shape == (1,)


def test_dihedral_boxes_follow_the_image_transform():
    image = torch.zeros(1, 20, 20)
    image[0, 2:6, 10:18] = 1  # a box x 10..18, y 2..6
    box = np.array([[10.0, 2.0, 18.0, 6.0]], np.float32)
    for t in transforms(rotate=True, flip=True):
        moved = dihedral(image, t)[0]
        ys, xs = moved.nonzero(as_tuple=True)
        np.testing.assert_allclose(dihedral_boxes(box, 20, t)[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert transforms(rotate=False, flip=True) == [0, 4] and transforms(rotate=False, flip=False) == [0]


def test_cached_features_see_the_pixels_whole_image_inference_sees():
    """One padding for training and inference (issue 21 item 4): the cached input of an image is the
    window whole-image inference cuts (inference.windows.padded_square), resized the same way; on a
    square image it is the plain resize the cache used before (trees-dev's tiles are all square)."""
    from PIL import Image

    from multibox.engine.feature_cache import padded_input
    from multibox.inference.windows import padded_square, window_inputs

    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    pixels, scale = padded_input(wide, 64)
    assert scale == 64 / 50
    inference = window_inputs(wide, padded_square(50, 30), 64)[0]
    assert torch.equal(pixels, inference)
    assert pixels[:, 40:, :].sum() == 0 and pixels[:, :38, :].float().mean() > 50  # black below the image only
    square = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    plain = torch.from_numpy(np.asarray(square.resize((64, 64), Image.BILINEAR)).copy()).permute(2, 0, 1)
    assert torch.equal(padded_input(square, 64)[0], plain)


class SplitPooledBackbone(nn.Module):
    """Two pooled stages with a split (front: stride 8, back: stride 16, both levels fused at 16): every
    cell sees only its own pixels, so a window of the front map is exactly the crop's."""

    stride, out_channels, front_stride, front_channels = 16, 7, 8, 3

    def __init__(self) -> None:
        super().__init__()
        self.conv8, self.conv16 = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 4, 1)

    def front(self, x):
        return self.conv8(nn.functional.avg_pool2d(x, 8))

    def back(self, x):
        return torch.cat([nn.functional.avg_pool2d(x, 2), self.conv16(nn.functional.avg_pool2d(x, 2))], 1)

    def back_modules(self):
        return nn.ModuleList([self.conv16])

    def forward(self, x):
        return self.back(self.front(x))


def test_the_partially_tuned_step_equals_the_end_to_end_step():
    """train.tune_backbone: a window of the cached front map, run through the back layers and the head,
    gives the crop's outputs, loss and gradients of the back layers (exact for a border-free backbone)."""
    torch.manual_seed(0)
    net = GridMultiBox(SplitPooledBackbone(), torch.tensor([[12.0, 12.0], [24.0, 20.0]]), image_size=64, hidden=8, depth=1)
    image = torch.rand(1, 3, 64, 64)
    front = net.front(image)[0].detach()  # [3, 8, 8] at stride 8
    boxes = np.array([[20.0, 18.0, 40.0, 44.0], [8.0, 30.0, 30.0, 50.0]], np.float32)
    samples = CachedWindows([CachedMap(front, boxes)], cells=4, stride=8, priors=net.grid_priors(2, 2))
    window, window_boxes = samples.window(samples.maps[0], np.random.default_rng(1))
    oy, ox = np.random.default_rng(1).integers(0, 5, 2)  # offsets in stride-8 cells
    assert oy % 2 == 0 and ox % 2 == 0, "pick a seed whose window sits on the stride-16 grid"
    crop = image[..., 8 * oy : 8 * oy + 32, 8 * ox : 8 * ox + 32]
    gt = torch.from_numpy(window_boxes.astype(np.float32))[None]
    assert gt.shape[1] > 0
    targets = {"boxes": gt, "count": torch.tensor([gt.shape[1]]), "prior_match": match_priors(net.grid_priors(2, 2), gt[0])[None]}
    loss = MultiBoxLoss()
    grads = []
    for outputs in (lambda: net(crop), lambda: net.forward_features(net.features_from_front(window[None]))):
        net.zero_grad()
        terms = loss(outputs(), targets)
        sum(terms.values()).backward()
        grads.append(net.backbone.conv16.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0  # the back layers learn
