"""Pictures for a person (issue 22 item 7): scores with 2 decimals, only boxes at or above the drawing
threshold, small images upscaled before drawing, large ones left at their size."""

import numpy as np
import pytest
from PIL import Image

from multibox.reports.plots import AGNOSTIC_COLOR, DRAW_CONF, VIEW_MIN_SIDE, draw_for_viewing, score_text, view_scale


@pytest.mark.parametrize("score,text", [(0.8712, "0.87"), (3.2e-13, "0.00"), (1.0, "1.00"), (0.255, "0.26")])
def test_scores_are_written_with_two_decimals(score, text):
    assert score_text(score) == text


def test_small_images_are_upscaled_large_ones_kept():
    assert view_scale(64, 32) == VIEW_MIN_SIDE / 64 and view_scale(2000, 1000) == 1.0
    assert view_scale(VIEW_MIN_SIDE, 10) == 1.0


def test_the_picture_is_upscaled_and_shows_only_boxes_above_the_threshold():
    image = Image.new("RGB", (64, 48), (128, 128, 128))
    boxes = np.array([[8.0, 8, 30, 40], [36, 8, 60, 40]])
    out = draw_for_viewing(image, boxes, np.array([0.9, DRAW_CONF - 0.01]))
    factor = VIEW_MIN_SIDE / 64
    assert out.size == (VIEW_MIN_SIDE, round(48 * factor))
    assert out.getpixel((round(8 * factor) + 1, round(30 * factor))) == AGNOSTIC_COLOR  # drawn at the shown size
    assert out.getpixel((round(36 * factor) + 1, round(30 * factor))) == (128, 128, 128)  # 0.24 < 0.25: not drawn
    lowered = draw_for_viewing(image, boxes, np.array([0.9, 0.24]), min_score=0.2)
    assert lowered.getpixel((round(36 * factor) + 1, round(30 * factor))) == AGNOSTIC_COLOR
    assert image.size == (64, 48) and image.getpixel((8, 30)) == (128, 128, 128)  # the input is left as it was


def test_a_large_image_is_drawn_at_its_own_size():
    image = Image.new("RGB", (800, 700))
    out = draw_for_viewing(image, np.array([[100.0, 100, 300, 300]]), np.array([0.5]))
    assert out.size == (800, 700) and out.getpixel((100, 200)) == AGNOSTIC_COLOR
