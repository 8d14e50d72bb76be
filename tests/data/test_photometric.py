"""Photometric jitter: colours move, boxes do not; seeded; strength 0 is the identity."""

import numpy as np
import torch

from multibox.data.photometric import jitter


def drawn_box(side=96, box=(20, 30, 61, 77)):
    image = torch.full((3, side, side), 40, dtype=torch.uint8)
    x0, y0, x1, y1 = box
    image[:, y0:y1, x0:x1] = torch.tensor([200, 150, 90], dtype=torch.uint8)[:, None, None]
    return image, box


def bounding_box(image):
    """The box of pixels far from the background, found from the pixels alone."""
    gray = image.float().mean(0)
    mask = (gray - gray[0, 0]).abs() > 0.5 * (gray.max() - gray[0, 0]).abs()
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_a_drawn_box_round_trips_through_every_jitter():
    image, box = drawn_box()
    for seed in range(20):
        out = jitter(image, 1.0, np.random.default_rng(seed))
        assert out.dtype == torch.uint8 and out.shape == image.shape
        found = bounding_box(out)
        assert max(abs(a - b) for a, b in zip(found, box)) <= 1, (seed, found)


def test_jitter_changes_colours_is_seeded_and_zero_strength_is_the_identity():
    image, _ = drawn_box()
    a = jitter(image, 0.75, np.random.default_rng([3, 1]))
    b = jitter(image, 0.75, np.random.default_rng([3, 1]))
    assert torch.equal(a, b)
    assert not torch.equal(a, image)
    assert torch.equal(jitter(image, 0.0, np.random.default_rng(0)), image)


def test_a_grey_view_keeps_its_box_and_loses_its_colour():
    image, box = drawn_box()
    out = jitter(image, 0.0, np.random.default_rng(0), gray=1.0)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert bounding_box(out) == box
