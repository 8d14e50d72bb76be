"""Inference post-processing: crop -> image mapping, truncation, NMS, top-k; the predict API."""

import torch

from multibox.inference.postprocess import postprocess, select


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
