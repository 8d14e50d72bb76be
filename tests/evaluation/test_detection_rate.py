"""Detection rate vs number of boxes (Fig. 1) on hand-worked cases, and the priors baseline."""

import pytest
import torch

from multibox.evaluation.detection_rate import DetectionRate


def test_hand_worked_curve():
    # Image 1: two objects; box ranks 0 (misses), 1 (hits A), 2 (hits B and A).
    # Image 2: one object, hit only by rank 3; plus one ignored object that no box hits.
    preds = [
        {"boxes": torch.tensor([[50.0, 50, 60, 60], [0, 0, 10, 10], [0, 0, 30, 10]]), "scores": torch.tensor([0.9, 0.8, 0.7])},
        {"boxes": torch.tensor([[90.0, 90, 99, 99], [80, 80, 90, 90], [70, 70, 80, 80], [0, 0, 20, 20]]),
         "scores": torch.tensor([0.9, 0.8, 0.7, 0.6])},
    ]
    targets = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [12, 0, 30, 10]])},
        {"boxes": torch.tensor([[0.0, 0, 20, 20], [40, 40, 50, 50]]), "ignore": torch.tensor([False, True])},
    ]
    metric = DetectionRate(max_k=5)
    metric.update(preds, targets)
    out = metric.compute()
    assert out["num_images"] == 2 and out["num_objects"] == 3
    # k=1: nothing; k=2: A; k=3: A, B; k=4: A, B, image-2 object.
    assert out["curve"] == pytest.approx([0, 1 / 3, 2 / 3, 1, 1])
    assert out["detection_rate"] == {"1": 0.0, "5": 1.0}


def test_iou_threshold_is_inclusive_at_half():
    metric = DetectionRate(max_k=1)
    # IoU exactly 0.5: box [0,0,10,10] vs [0,0,10,20] -> 100 / 200.
    metric.update([{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.ones(1)}], [{"boxes": torch.tensor([[0.0, 0, 10, 20]])}])
    assert metric.compute()["curve"] == [1.0]


def test_images_without_objects_or_boxes():
    metric = DetectionRate(max_k=3)
    metric.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}, {"boxes": torch.tensor([[0.0, 0, 5, 5]]), "scores": torch.ones(1)}],
                  [{"boxes": torch.tensor([[0.0, 0, 5, 5]])}, {"boxes": torch.zeros(0, 4)}])
    out = metric.compute()
    assert out["num_images"] == 2 and out["num_objects"] == 1 and out["curve"] == [0.0, 0.0, 0.0]
