"""Pictures a person looks at: boxes in their class's colour, labels on filled boxes readable on any
background and sized to the image, only boxes above the threshold; the PR legend gives AP."""

import numpy as np
import pytest
from PIL import Image

from multibox.reports import plots
from multibox.reports.plots import (
    AGNOSTIC_COLOR,
    PALETTE,
    annotation_sizes,
    curve_ap,
    draw_boxes,
    plot_pr_curves,
    text_color,
)


def pixel(image, x, y):
    return image.getpixel((x, y))


@pytest.mark.parametrize("background", [(0, 0, 0), (255, 255, 255), (31, 119, 180)])
def test_boxes_take_their_class_colour_and_labels_a_filled_box(background):
    image = Image.new("RGB", (200, 150), background)
    boxes = np.array([[20.0, 40, 80, 120], [110, 40, 190, 140]])
    out = draw_boxes(image, boxes, scores=np.array([0.9, 0.8]), labels=["cat", "dog"], class_ids=[0, 1])
    assert pixel(out, 20, 80) == PALETTE[0] and pixel(out, 190, 90) == PALETTE[1]  # left / right edges
    label = np.asarray(out)[40 - 12 : 40, 20:50]  # just above box 0: its label box
    is_fill = (label == PALETTE[0]).all(-1)
    is_text = np.abs(label.astype(int) - text_color(PALETTE[0])).sum(-1) < 120  # antialiased text
    assert is_fill.mean() > 0.4 and is_text.sum() > 10  # a filled box with text in the contrasting colour
    assert pixel(image, 20, 80) == background  # the input is left as it was


def test_only_boxes_above_the_threshold_are_drawn():
    image = Image.new("RGB", (100, 100), (128, 128, 128))
    out = draw_boxes(image, np.array([[10.0, 10, 40, 40], [50, 50, 90, 90]]), np.array([0.6, 0.2]), min_score=0.5)
    assert pixel(out, 10, 25) == AGNOSTIC_COLOR and pixel(out, 50, 70) == (128, 128, 128)


def test_text_contrasts_with_its_fill_and_sizes_grow_with_the_image():
    assert text_color((255, 255, 0)) == (0, 0, 0) and text_color((20, 20, 120)) == (255, 255, 255)
    assert all(text_color(c) in [(0, 0, 0), (255, 255, 255)] for c in PALETTE) and len(set(PALETTE)) == len(PALETTE)
    small, large = annotation_sizes(64, 64), annotation_sizes(2000, 1500)
    assert small == (2, 10) and large[0] > small[0] and large[1] > 3 * small[1]

    def label_height(side):
        out = draw_boxes(Image.new("RGB", (side, side)), np.array([[0.0, side / 2, side / 2, side]]), np.array([0.9]))
        column = (np.asarray(out)[:, 1] == AGNOSTIC_COLOR).all(-1)  # the label box sits above the box
        return int(column[: side // 2].sum())

    assert label_height(1600) > 3 * label_height(200)


def test_pr_legend_gives_ap(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    curves = {"model": {"precision": [1.0, 1.0, 0.5], "recall": [0.5, 1.0, 1.0]},
              "given": {"precision": [1.0], "recall": [0.2], "AP": 0.25}}
    plot_pr_curves(curves, tmp_path / "pr.png")
    legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert legend == ["model (AP 1.000)", "given (AP 0.250)"] and (tmp_path / "pr.png").stat().st_size > 0
    assert np.isnan(curve_ap({"precision": [], "recall": []}))
    assert curve_ap({"precision": [1.0], "recall": [0.5]}) == pytest.approx(6 / 11)  # 11-point: 0, 0.1 .. 0.5
