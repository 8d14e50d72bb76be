"""ILSVRC det@5 / class@5 on hand-made images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multibox.evaluation.ilsvrc import ILSVRCMetric

A, B = [0, 0, 100, 100], [200, 200, 300, 260]
FAR = [400, 400, 450, 450]


def _guesses(boxes, labels, scores=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.linspace(1, 0.5, len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64)
    return {"boxes": boxes, "labels": np.asarray(labels, np.int64), "scores": scores}


def _objects(boxes, labels, ignore=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ignore = np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, bool)
    return {"boxes": boxes, "labels": np.asarray(labels, np.int64), "ignore": ignore}


def _run(preds, targets, **kwargs):
    metric = ILSVRCMetric(**kwargs)
    metric.update(preds, targets)
    return metric.compute()


def test_label_and_box_must_belong_to_the_same_object():
    """Right label with a far box + right box with a wrong label: class hit, no det hit."""
    out = _run([_guesses([FAR, A], [3, 7])], [_objects([A], [3])])
    assert out["class@5"] == 1.0 and out["det@5"] == 0.0
    assert out["det@5_error"] == 1.0 and out["class@5_error"] == 0.0


def test_any_of_several_objects_counts():
    """Objects A (label 1) and B (label 2); the guess (2, B) localizes B."""
    out = _run([_guesses([FAR, B], [5, 2])], [_objects([A, B], [1, 2])])
    assert out["det@5"] == 1.0 and out["class@5"] == 1.0


def test_iou_of_exactly_half_is_a_hit():
    """[0,0,100,50] covers half of A: IoU 0.5 -> hit; at a 0.51 threshold -> miss."""
    preds, targets = [_guesses([[0, 0, 100, 50]], [3])], [_objects([A], [3])]
    assert _run(preds, targets)["det@5"] == 1.0
    assert _run(preds, targets, iou_threshold=0.51)["det@5"] == 0.0


def test_only_the_top_five_guesses_count():
    """The correct guess is sixth by score: missed at k = 5, found at k = 6 (keys follow k)."""
    boxes, labels = [FAR] * 5 + [A], [9, 8, 7, 6, 5, 3]
    preds, targets = [_guesses(boxes, labels, scores=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4])], [_objects([A], [3])]
    out = _run(preds, targets)
    assert out["det@5"] == 0.0 and out["class@5"] == 0.0
    out6 = _run(preds, targets, top_k=6)
    assert out6["det@6"] == 1.0 and out6["class@6"] == 1.0


def test_ranked_by_score_not_input_order_and_ties_keep_input_order():
    # Correct guess listed last but scored highest: it is within the top 5.
    boxes, labels = [FAR] * 5 + [A], [9, 8, 7, 6, 5, 3]
    assert _run([_guesses(boxes, labels, scores=[0.1] * 5 + [0.9])], [_objects([A], [3])])["det@5"] == 1.0
    # Six equal scores: the first five in input order are kept, the sixth (correct) one is not.
    assert _run([_guesses(boxes, labels, scores=[0.5] * 6)], [_objects([A], [3])])["det@5"] == 0.0


def test_rates_over_images_with_objects():
    """Images: det hit; class-only hit; miss; no guesses; no objects (skipped); only ignored (skipped)."""
    preds = [
        _guesses([A], [1]),
        _guesses([FAR], [1]),
        _guesses([A], [2]),
        _guesses(np.zeros((0, 4)), []),
        _guesses([A], [1]),
        _guesses([A], [1]),
    ]
    targets = [
        _objects([A], [1]),
        _objects([A], [1]),
        _objects([A], [1]),
        _objects([A], [1]),
        _objects(np.zeros((0, 4)), []),
        _objects([A], [1], ignore=[True]),
    ]
    out = _run(preds, targets)
    assert out["num_images"] == 4
    assert out["det@5"] == pytest.approx(1 / 4) and out["class@5"] == pytest.approx(2 / 4)
    assert out["det@5_error"] == pytest.approx(3 / 4) and out["class@5_error"] == pytest.approx(2 / 4)


def test_objects_of_other_images_do_not_count():
    preds = [_guesses([A], [1]), _guesses([B], [2])]
    targets = [_objects([B], [2]), _objects([A], [1])]
    out = _run(preds, targets)
    assert out["det@5"] == 0.0 and out["class@5"] == 0.0


def test_tensors_reset_and_arguments():
    metric = ILSVRCMetric()
    metric.update([{k: torch.as_tensor(v) for k, v in _guesses([A], [1]).items()}], [_objects([A], [1])])
    assert metric.compute()["det@5"] == 1.0
    metric.reset()
    assert np.isnan(metric.compute()["det@5"])
    with pytest.raises(ValueError, match="top_k"):
        ILSVRCMetric(top_k=0)
    with pytest.raises(ValueError, match="labels"):
        metric.update([{"boxes": np.zeros((1, 4)), "scores": np.ones(1)}], [_objects([A], [1])])
