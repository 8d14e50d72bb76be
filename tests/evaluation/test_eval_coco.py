"""COCOMetric must equal pycocotools' COCOeval (bbox) to 1e-6, class-aware and class-agnostic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.eval_coco_reference import pycocotools_eval, random_fixture
from multibox.evaluation.coco import STAT_KEYS, COCOMetric, coco_precision_recall


def _ours(preds, targets, class_aware: bool) -> np.ndarray:
    metric = COCOMetric(class_aware=class_aware)
    metric.update(preds, targets)
    stats = metric.compute()
    assert list(stats) == list(STAT_KEYS) and all(type(v) is float for v in stats.values())
    return np.array([stats[k] for k in STAT_KEYS])


def _assert_equal_to_pycocotools(preds, targets, class_aware: bool) -> None:
    ref = pycocotools_eval(preds, targets, use_cats=class_aware)
    np.testing.assert_allclose(_ours(preds, targets, class_aware), ref.stats, rtol=0, atol=1e-6)
    metric = COCOMetric(class_aware=class_aware)
    metric.update(preds, targets)
    precision, recall = coco_precision_recall(metric.flat(), class_aware)
    # The full arrays too: a wrong curve can hide inside a mean. Our classes are those with ground
    # truth; pycocotools also lists (as all -1) categories that only detections use.
    with_gt = {int(v) + 1 for t in targets for v in t["labels"]}
    k = [i for i, c in enumerate(ref.params.catIds) if c in with_gt] if class_aware else [0]
    np.testing.assert_allclose(precision, ref.eval["precision"][:, :, k], rtol=0, atol=1e-6)
    np.testing.assert_allclose(recall, ref.eval["recall"][:, k], rtol=0, atol=1e-6)


def test_fixture_covers_every_case():
    """The random fixtures hold what the equality tests claim to exercise."""
    preds, targets = random_fixture(0)
    assert any(len(t["boxes"]) == 0 for t in targets)  # image without ground truth
    assert any(len(p["boxes"]) == 0 for p in preds)  # image without detections
    assert any(len(p["boxes"]) > 100 for p in preds)  # maxDets truncation
    assert sum(int(t["ignore"].sum()) for t in targets) >= 3  # crowd regions
    scores = np.concatenate([p["scores"] for p in preds])
    assert len(np.unique(scores)) < len(scores) / 10  # many tied scores
    areas = np.concatenate([(t["boxes"][:, 2] - t["boxes"][:, 0]) * (t["boxes"][:, 3] - t["boxes"][:, 1])
                            for t in targets])
    assert (areas < 32**2).any() and ((areas > 32**2) & (areas < 96**2)).any() and (areas > 96**2).any()
    duplicated = [len(np.unique(t["boxes"], axis=0)) < len(t["boxes"]) for t in targets]
    assert any(duplicated)  # equal IoUs with two ground truths


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("class_aware", [True, False], ids=["useCats1", "useCats0"])
def test_equals_pycocotools(seed, class_aware):
    _assert_equal_to_pycocotools(*random_fixture(seed), class_aware)


@pytest.mark.parametrize("class_aware", [True, False], ids=["useCats1", "useCats0"])
def test_equals_pycocotools_many_crowds_and_ties(class_aware):
    """Crowd-heavy images and scores that are only 0 or 1 (nearly every rank is a tie)."""
    preds, targets = random_fixture(11, num_images=25, num_classes=2, crowd_rate=0.4, score_decimals=0)
    _assert_equal_to_pycocotools(preds, targets, class_aware)


def test_equals_pycocotools_single_class_many_images():
    preds, targets = random_fixture(7, num_images=60, num_classes=1)
    _assert_equal_to_pycocotools(preds, targets, class_aware=True)


def _image(boxes, scores=None, labels=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.linspace(0.9, 0.1, len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64)
    labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels, np.int64)
    return {"boxes": boxes, "scores": scores, "labels": labels}


def _target(boxes, ignore=None, labels=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ignore = np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, bool)
    labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels, np.int64)
    return {"boxes": boxes, "labels": labels, "ignore": ignore}


def test_crowd_region_absorbs_several_detections():
    """Two detections inside one crowd region are both ignored: AP stays 1 for the one real object."""
    crowd, person = [0, 0, 200, 200], [300, 300, 400, 400]
    target = _target([person, crowd], ignore=[False, True])
    # Highest score first: two boxes inside the crowd (IoU with it < 0.5, overlap/area(det) = 1).
    pred = _image([[10, 10, 50, 50], [60, 60, 90, 90], person])
    stats = _ours([pred], [target], class_aware=True)
    assert stats[0] == pytest.approx(1.0)  # without crowd handling: precision 1/3 -> AP ~0.33
    _assert_equal_to_pycocotools([pred], [target], class_aware=True)


def test_known_values_by_hand():
    """2 objects, detections FP (0.9), TP (0.8), TP (0.7) -> precision 0, 1/2, 2/3 at recall 0, .5, 1.

    The envelope is 2/3 at every recall threshold, so AP50 = 2/3; AR100 = 1 at IoU 0.5 (the boxes
    are exact, so every threshold matches and AP = 2/3 too).
    """
    a, b = [0, 0, 100, 100], [200, 200, 260, 300]
    pred = _image([[500, 500, 510, 510], a, b], scores=[0.9, 0.8, 0.7])
    stats = dict(zip(STAT_KEYS, _ours([pred], [_target([a, b])], class_aware=True)))
    assert stats["AP50"] == pytest.approx(2 / 3)
    assert stats["AP"] == pytest.approx(2 / 3)
    assert stats["AR1"] == pytest.approx(0.0)  # the single best detection is the false positive
    assert stats["AR100"] == pytest.approx(1.0)
    assert stats["APs"] == -1.0  # no small objects: undefined, like pycocotools


def test_tensor_and_numpy_inputs_and_batches_agree():
    preds, targets = random_fixture(3, num_images=12)
    as_tensors = [{k: torch.as_tensor(v) for k, v in d.items()} for d in preds]
    float32 = [{**d, "boxes": d["boxes"].float()} for d in as_tensors]
    one = _ours(preds, targets, class_aware=True)
    metric = COCOMetric()
    metric.update(as_tensors[:5], targets[:5])
    metric.update(float32[5:], targets[5:])
    np.testing.assert_allclose(np.array(list(metric.compute().values())), one, atol=1e-4)
    metric.reset()
    metric.update(as_tensors, targets)
    np.testing.assert_array_equal(np.array(list(metric.compute().values())), one)


def test_reset_forgets_everything():
    preds, targets = random_fixture(4, num_images=6)
    metric = COCOMetric()
    metric.update(preds, targets)
    assert metric.compute()["AP"] > 0
    metric.reset()
    assert metric.compute()["AP"] == -1.0


def test_class_agnostic_needs_no_labels_and_class_aware_does():
    preds, targets = random_fixture(5, num_images=8)
    # No labels at all: ties among equal scores then keep input order instead of label order, so
    # compare on unique scores.
    unique = [{**p, "scores": p["scores"] + np.arange(len(p["scores"])) * 1e-7} for p in preds]
    unlabeled = [{k: v for k, v in p.items() if k != "labels"} for p in unique]
    np.testing.assert_allclose(_ours(unlabeled, targets, False), _ours(unique, targets, False), atol=1e-12)
    with pytest.raises(ValueError, match="labels"):
        COCOMetric(class_aware=True).update(unlabeled, targets)


def test_rejects_malformed_inputs():
    metric = COCOMetric()
    with pytest.raises(ValueError, match="shape"):
        metric.update([_image([[0, 0, 1, 1]]) | {"boxes": np.zeros((1, 3))}], [_target([])])
    with pytest.raises(ValueError, match="scores"):
        metric.update([_image([[0, 0, 1, 1]]) | {"scores": np.zeros(2)}], [_target([])])
    with pytest.raises(ValueError, match="targets"):
        metric.update([_image([])], [])
    with pytest.raises(ValueError, match="labels"):  # a bad target late in the batch ...
        metric.update([_image([[0, 0, 1, 1]])] * 2, [_target([]), _target([[0, 0, 1, 1]]) | {"labels": np.zeros(3)}])
    assert metric.num_images == 0  # ... leaves nothing half-added


def test_equal_ious_go_to_the_later_ground_truth():
    """COCOeval scans ground truths with ">=", so of two equal-IoU candidates the later one wins.

    g1 = [0,0,10,10], g2 = [2,0,12,10]; d1 = [1,0,11,10] (score .9) has IoU 90/110 = 0.82 with both
    and takes g2; d2 = g1 (score .1) then takes g1 at IoU 1. Up to threshold 0.8 both are true
    positives (AP 1); at 0.85-0.95 d1 is a false positive ranked first: precision 1/2 up to recall
    1/2, AP = 51 * 0.5 / 101. Mean over the 10 thresholds: (7 + 3 * 25.5 / 101) / 10.
    (Had d1 taken g1, d2 would reach g2 only at IoU 80/120 = 0.67 and AP75 would be 51/101.)
    """
    g1, g2 = [0, 0, 10, 10], [2, 0, 12, 10]
    pred, target = _image([[1, 0, 11, 10], g1]), _target([g1, g2])
    stats = dict(zip(STAT_KEYS, _ours([pred], [target], class_aware=True)))
    assert stats["AP75"] == pytest.approx(1.0)
    assert stats["AP"] == pytest.approx((7 + 3 * 25.5 / 101) / 10)
    for class_aware in (True, False):
        _assert_equal_to_pycocotools([pred], [target], class_aware)


def test_boundaries_are_inclusive():
    """IoU exactly 0.5 / 0.75 matches at that threshold; areas exactly 32^2 and 96^2 are in both ranges.

    Objects: 32x32 (small and medium), 96x96 (medium and large). Detections: the 32x32 box halved
    (IoU 0.5 exactly), the 96x96 box cut to 3/4 (IoU 0.75 exactly).
    """
    small, big = [0, 0, 32, 32], [100, 100, 196, 196]
    pred, target = _image([[0, 0, 32, 16], [100, 100, 196, 172]]), _target([small, big])
    stats = dict(zip(STAT_KEYS, _ours([pred], [target], class_aware=True)))
    assert stats["AP50"] == pytest.approx(1.0)
    # At 0.75 only the second-ranked detection matches: precision 1/2 up to recall 1/2.
    assert stats["AP75"] == pytest.approx(51 * 0.5 / 101)
    assert stats["APs"] > -1 and stats["APm"] > -1 and stats["APl"] > -1
    _assert_equal_to_pycocotools([pred], [target], class_aware=True)


def test_max_dets_truncates_per_image_and_class():
    """100 false positives outscoring one exact hit: the hit is the 101st of its group.

    Class-agnostic (and class-aware with one class) it is cut away: AR100 = 0. Class-aware with the
    false positives spread over two classes, the hit's class holds only 51 detections: AR100 = 1.
    """
    obj = [300, 300, 400, 400]
    fp = np.array([[i, 0, i + 5, 5] for i in range(100)], dtype=np.float64)
    boxes = np.concatenate([fp, [obj]])
    scores = np.concatenate([np.linspace(1, 0.5, 100), [0.1]])
    target = _target([obj])
    one_class = _image(boxes, scores)
    two_classes = _image(boxes, scores, labels=np.r_[np.arange(100) % 2, 0])
    assert dict(zip(STAT_KEYS, _ours([one_class], [target], False)))["AR100"] == 0.0
    assert dict(zip(STAT_KEYS, _ours([two_classes], [target], True)))["AR100"] == 1.0
    assert dict(zip(STAT_KEYS, _ours([two_classes], [target], False)))["AR100"] == 0.0
    for pred in (one_class, two_classes):
        for class_aware in (True, False):
            _assert_equal_to_pycocotools([pred], [target], class_aware)


def test_chunked_pair_search_gives_the_same_numbers(monkeypatch):
    """Pairs are enumerated in chunks to bound memory; tiny chunks must not change anything."""
    from multibox.evaluation import overlaps

    preds, targets = random_fixture(9, num_images=15)
    whole = _ours(preds, targets, class_aware=False)
    monkeypatch.setattr(overlaps, "_CHUNK_PAIRS", 7)
    np.testing.assert_array_equal(_ours(preds, targets, class_aware=False), whole)
    assert whole[0] > 0
