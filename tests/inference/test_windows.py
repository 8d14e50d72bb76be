"""Whole-image (padded) and tiled inference: windows cover the image, boxes map back exactly, an object
cut by a tile border is reported once."""

import torch
from PIL import Image

from multibox.boxes import crop_to_image, image_to_crop
from multibox.data.transforms import crop_resize
from multibox.inference.localizer import Localizer
from multibox.inference.postprocess import merge_windows
from multibox.inference.windows import image_windows, tile_windows


class BrightBox(torch.nn.Module):
    """A stand-in localizer: one box around the input's bright pixels (in the window's [0, 1] frame),
    confident when there are any; K = 1."""

    def forward(self, images):
        bright = images.float().mean(1) > 128  # [B, S, S]
        s = images.shape[-1]
        boxes, logits = [], []
        for mask in bright:  # per window
            ys, xs = mask.nonzero(as_tuple=True)
            if len(xs):
                boxes.append(torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float() / s)
                logits.append(torch.tensor(float(len(xs)) / s**2 * 10))  # bigger visible part scores higher
            else:
                boxes.append(torch.zeros(4))
                logits.append(torch.tensor(-10.0))
        return {"pred_boxes": torch.stack(boxes)[:, None], "pred_logits": torch.stack(logits)[:, None]}


def test_whole_window_is_the_padded_square_and_maps_back_exactly():
    windows = image_windows(60, 40, "whole")
    assert torch.equal(windows, torch.tensor([[0.0, 0.0, 60.0, 60.0]]))
    boxes = torch.tensor([[[0.1, 0.2, 0.5, 0.6]]])
    pixels = crop_to_image(boxes, windows)
    assert torch.allclose(pixels, torch.tensor([[[6.0, 12.0, 30.0, 36.0]]]))
    assert torch.allclose(image_to_crop(pixels, windows), boxes)  # round trip


def test_padded_crop_keeps_the_image_at_its_scale_and_black_outside():
    image = Image.new("RGB", (60, 40), (200, 100, 50))
    out = crop_resize(image, torch.tensor([0.0, 0.0, 60.0, 60.0]), 30)  # [3, 30, 30], scale 1/2
    assert out.shape == (3, 30, 30)
    assert torch.all(out[:, :20, :] == torch.tensor([200, 100, 50])[:, None, None])  # the 40 rows -> 20
    assert torch.all(out[:, 20:, :] == 0)


def test_whole_image_localizer_finds_an_object_outside_the_center_square():
    image = Image.new("RGB", (120, 60))
    image.paste((255, 255, 255), (4, 20, 24, 40))  # in the left quarter: outside the center square
    whole = Localizer(BrightBox(), 60, windows="whole").predict(image, top_k=5)
    center = Localizer(BrightBox(), 60, windows="center").predict(image, top_k=5)
    assert torch.allclose(whole[0], torch.tensor([[4.0, 20.0, 24.0, 40.0]]), atol=1.0)
    assert len(center[1]) == 0  # the center square never sees it: its only box, empty, is not a detection


def test_tiles_cover_the_image_with_the_overlap_asked_for():
    tiles = tile_windows(250, 100, 100, overlap=0.25)
    assert tiles[:, 0].unique().tolist() == [0.0, 75.0, 150.0] and tiles[:, 1].unique().tolist() == [0.0]
    assert (tiles[:, 2] - tiles[:, 0] == 100).all() and tiles[:, 2].max() == 250
    assert len(tile_windows(80, 80, 100)) == 1  # smaller than a tile: one (padded) tile


def test_an_object_cut_by_a_tile_border_is_found_once():
    image = Image.new("RGB", (200, 100))
    image.paste((255, 255, 255), (90, 30, 120, 60))  # crosses x = 100, the right border of the first tile
    loc = Localizer(BrightBox(), 100, windows="tiles", tile=100, overlap=0.5)
    windows = loc.image_windows(200, 100)
    assert len(windows) == 3  # x0 = 0, 50, 100: the middle tile sees the object whole
    boxes, scores = loc.predict(image, top_k=10)
    found = boxes[scores > 0.5]
    assert len(found) == 1
    assert torch.allclose(found[0], torch.tensor([90.0, 30.0, 120.0, 60.0]), atol=1.0)


def test_merge_windows_with_counts_equals_per_image_merging():
    torch.manual_seed(0)
    k = 5
    windows = [torch.tensor([[0.0, 0, 50, 50], [25, 0, 75, 50]]), torch.tensor([[0.0, 0, 40, 40]])]
    sizes = torch.tensor([[75.0, 50.0], [40.0, 40.0]])
    outputs = {"pred_boxes": torch.rand(3, k, 4), "pred_logits": torch.randn(3, k)}
    ragged = merge_windows(outputs, torch.cat(windows), sizes, counts=torch.tensor([2, 1]))
    first = merge_windows({n: v[:2] for n, v in outputs.items()}, windows[0][None], sizes[:1])
    second = merge_windows({n: v[2:] for n, v in outputs.items()}, windows[1][None], sizes[1:])
    for got, want in zip(ragged, first + second):
        assert torch.equal(got["boxes"], want["boxes"]) and torch.equal(got["scores"], want["scores"])
