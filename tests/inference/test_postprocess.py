"""Inference post-processing: crop -> image mapping, truncation, NMS, top-k; the predict API."""

import pytest
import torch

from multibox.errors import UserError
from multibox.inference.postprocess import (
    MIN_BOX_SIDE,
    check_options,
    fewest,
    keep_best,
    merge_windows,
    postprocess,
    select,
)


def test_postprocess_maps_clips_and_suppresses():
    # One 200x100 image; its center square crop is x in [50, 150].
    outputs = {
        "pred_boxes": torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.52], [0.5, 0.5, 1.2, 1.0], [-0.1, 0, 0.1, 0.1]]]),
        "pred_logits": torch.tensor([[2.0, 1.0, 0.0, -1.0]]),
    }
    crops = torch.tensor([[50.0, 0, 150, 100]])
    sizes = torch.tensor([[200.0, 100.0]])
    det = postprocess(outputs, crops, sizes, nms_iou=0.5)[0]
    # box 1 overlaps box 0 at IoU 0.96 -> suppressed; box 2 extends to x=170 (< 200) so it is kept whole.
    assert torch.allclose(det["boxes"], torch.tensor([[50.0, 0, 100, 50], [100, 50, 170, 100], [40, 0, 60, 10]]))
    assert torch.allclose(det["scores"], torch.sigmoid(torch.tensor([2.0, 0.0, -1.0])))
    truncated = postprocess({"pred_boxes": torch.tensor([[[-2.0, -1, 3, 2]]]), "pred_logits": torch.zeros(1, 1)},
                            crops, sizes)[0]
    assert truncated["boxes"].tolist() == [[0.0, 0.0, 200.0, 100.0]]


def test_select_is_per_image_and_top_k():
    boxes = torch.tensor([[[0.0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]], [[0.0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 1, 1]]])
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])
    out = select(boxes, scores, 0.5, top_k=1)
    assert [o["scores"].tolist() for o in out] == [[0.8999999761581421], [0.800000011920929]]
    out = select(boxes, scores, 0.5, top_k=None)
    assert [len(o["scores"]) for o in out] == [2, 2]
    assert out[1]["boxes"].tolist() == [[0, 0, 1, 1], [5, 5, 6, 6]]


def test_swapped_corners_are_ordered():
    outputs = {"pred_boxes": torch.tensor([[[0.6, 0.8, 0.2, 0.1]]]), "pred_logits": torch.zeros(1, 1)}
    det = postprocess(outputs, torch.tensor([[0.0, 0, 100, 100]]), torch.tensor([[100.0, 100.0]]))[0]
    assert torch.allclose(det["boxes"], torch.tensor([[20.0, 10, 60, 80]]))


def test_degenerate_boxes_are_dropped_before_nms_and_top_k():
    # A 100 x 40 image seen whole: one window, the 100 x 100 padded square. A box predicted in the
    # padding below the image truncates to zero height; one outside the window to a point; one
    # truncates to a 0.5 px sliver. None may be returned, and none may take a top-k slot.
    pred = torch.tensor([[[0.0, 0.5, 1.0, 0.9],     # y 50..90 px: all in the padding -> [0, 40, 100, 40]
                          [1.1, 1.1, 1.3, 1.3],     # outside the window -> a point at (100, 40)
                          [0.2, 0.395, 0.6, 0.5],   # 39.5..50 -> 0.5 px tall after truncation
                          [0.1, 0.1, 0.3, 0.3],     # a real box, 20 x 20 px
                          [0.5, 0.0, 0.8, 0.2]]])   # another, 30 x 20 px
    logits = torch.tensor([[5.0, 4.0, 3.0, 1.0, 0.0]])  # the degenerate ones score best
    outputs = {"pred_boxes": pred, "pred_logits": logits}
    [det] = merge_windows(outputs, torch.tensor([[[0.0, 0, 100, 100]]]), torch.tensor([[100.0, 40.0]]), 0.5, top_k=2)
    assert torch.allclose(det["boxes"], torch.tensor([[10.0, 10, 30, 30], [50, 0, 80, 20]]))
    wh = det["boxes"][:, 2:] - det["boxes"][:, :2]
    assert (wh >= MIN_BOX_SIDE).all()
    [det] = merge_windows(outputs, torch.tensor([[[0.0, 0, 100, 100]]]), torch.tensor([[100.0, 40.0]]), None)
    assert len(det["scores"]) == 2  # without NMS too


def test_min_score_drops_weak_boxes_before_top_k():
    pred = torch.tensor([[[0.0, 0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.4, 1.0]]])
    outputs = {"pred_boxes": pred, "pred_logits": torch.tensor([[2.0, 0.0, -2.0]])}  # 0.88, 0.5, 0.12
    crops, sizes = torch.tensor([[0.0, 0, 100, 100]]), torch.tensor([[100.0, 100.0]])
    [det] = merge_windows(outputs, crops[:, None], sizes, 0.5, None, min_score=0.5)
    assert det["scores"].tolist() == [torch.sigmoid(torch.tensor(2.0)).item(), 0.5]
    assert len(merge_windows(outputs, crops[:, None], sizes, 0.5, None, min_score=0.95)[0]["scores"]) == 0


def test_prediction_options_are_checked_with_their_names():
    check_options(0.0, 1.0, 1, 1)
    for kwargs, name in [({"min_score": -0.1}, "min_score"), ({"min_score": 1.5}, "min_score"),
                         ({"iou": 0.0}, "iou"), ({"iou": 1.2}, "iou"), ({"top_k": 0}, "top_k"),
                         ({"max_det": 2.5}, "max_det")]:
        with pytest.raises(UserError, match=f"^{name} "):
            check_options(**kwargs)
    assert fewest(None, 5, 3) == 3 and fewest(None, None) is None


def test_keep_best_filters_every_field_together():
    det = {"boxes": torch.arange(12.0).reshape(3, 4), "scores": torch.tensor([0.9, 0.4, 0.1]),
           "labels": torch.tensor([2, 0, 1])}
    kept = keep_best(det, min_score=0.3, max_det=5)
    assert kept["labels"].tolist() == [2, 0] and kept["boxes"].shape == (2, 4)
    assert keep_best(det, 0.0, 1)["scores"].tolist() == [pytest.approx(0.9)]
