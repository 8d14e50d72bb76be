"""VOC AP (11-point and area), difficult objects, duplicates, the +1 convention, class-agnostic PR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.eval_coco_reference import random_fixture
from multibox.evaluation.voc import ClassAgnosticPR, VOCMetric, average_precision


def _pred(boxes, scores, labels=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels, np.int64)
    return {"boxes": boxes, "scores": np.asarray(scores, dtype=np.float64), "labels": labels}


def _target(boxes, difficult=None, labels=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.asarray(difficult, bool)
    labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels, np.int64)
    return {"boxes": boxes, "labels": labels, "ignore": difficult}


def _voc(preds, targets, **kwargs):
    metric = VOCMetric(**kwargs)
    metric.update(preds, targets)
    return metric.compute()


G1, G2, G3 = [0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 500, 100]
FAR = [600, 600, 700, 700]


def test_three_objects_four_detections_by_hand():
    """3 objects; detections by score: .9 hits G1, .8 hits nothing, .7 hits G2, .6 hits G1 again.

    Outcomes TP, FP, TP, FP (the last is a duplicate). Cumulative TP 1,1,2,2 and FP 0,1,1,2:
    precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3.
    11-point: r = 0, .1, .2, .3 -> 1; r = .4, .5, .6 -> 2/3; r = .7 .. 1 -> 0: AP = (4 + 2) / 11.
    Area: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], nothing after: AP = 1/3 + 2/9 = 5/9.
    """
    preds = [_pred([G1, FAR, G2, [2, 0, 102, 100]], [0.9, 0.8, 0.7, 0.6])]
    targets = [_target([G1, G2, G3])]
    out = _voc(preds, targets, ap_method="11point")
    assert out["ap"] == {0: pytest.approx(6 / 11)}
    assert out["mAP"] == pytest.approx(6 / 11)
    precision, recall = out["pr"][0]
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert _voc(preds, targets, ap_method="area")["mAP"] == pytest.approx(5 / 9)


def test_average_precision_directly():
    precision, recall = np.array([1, 0.5, 2 / 3, 0.5]), np.array([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert average_precision(precision, recall, "11point") == pytest.approx(6 / 11)
    assert average_precision(precision, recall, "area") == pytest.approx(5 / 9)
    assert average_precision(np.zeros(0), np.zeros(0), "area") == 0.0
    # FP, TP, TP of 2 objects: precision 0, 1/2, 2/3 at recall 0, 1/2, 1. The envelope lifts the
    # 1/2 to 2/3, so both definitions give 2/3 (the raw points would give 1/2 * 1/2 + 1/2 * 2/3).
    precision, recall = np.array([0, 0.5, 2 / 3]), np.array([0, 0.5, 1])
    assert average_precision(precision, recall, "area") == pytest.approx(2 / 3)
    assert average_precision(precision, recall, "11point") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="AP method"):
        average_precision(precision, recall, "101point")


def test_eleven_point_counts_recall_of_exactly_three_tenths():
    """10 objects, 3 exact hits: precision 1 up to recall 3/10, which reaches r = 0.3 -> AP = 4/11.

    (With thresholds from np.arange(0, 1.1, 0.1), r = 0.30000000000000004 and AP would be 3/11.)
    """
    objects = [[i * 20, 0, i * 20 + 10, 10] for i in range(10)]
    out = _voc([_pred(objects[:3], [0.9, 0.8, 0.7])], [_target(objects)])
    assert out["mAP"] == pytest.approx(4 / 11)


def test_difficult_objects_are_neither_tp_nor_fp():
    """G1 regular, G2 difficult. Detections: .9 on G2 (dropped), .8 on G1 (TP), .7 far (FP).

    Counted: TP then FP -> precision 1, 1/2 at recall 1, 1: AP = 1 either way. Were the difficult
    hit a FP, precision would be 0, 1/2, 1/3 and 11-point AP 1/2; were G2 a positive, recall 1/2.
    """
    targets = [_target([G1, G2], difficult=[False, True])]
    preds = [_pred([G2, G1, FAR], [0.9, 0.8, 0.7])]
    out = _voc(preds, targets)
    assert out["mAP"] == pytest.approx(1.0)
    np.testing.assert_allclose(out["pr"][0][0], [1, 0.5])
    np.testing.assert_allclose(out["pr"][0][1], [1, 1])
    assert _voc(preds, targets, ap_method="area")["mAP"] == pytest.approx(1.0)


def test_best_overlap_difficult_object_wins_over_a_regular_one():
    """The devkit takes the highest-IoU object even if difficult: the detection is then ignored.

    Regular R = [0,0,100,100], difficult D = [10,0,110,100]; the detection [8,0,108,100] has IoU
    92/108 with R and 98/102 with D -> ignored, R stays unfound: no counted detection, AP 0.
    """
    targets = [_target([[0, 0, 100, 100], [10, 0, 110, 100]], difficult=[False, True])]
    out = _voc([_pred([[8, 0, 108, 100]], [0.9])], targets)
    assert out["mAP"] == 0.0
    assert len(out["pr"][0][0]) == 0


def test_duplicate_is_a_false_positive_even_when_another_object_is_free():
    """Objects A = [0,0,100,100], B = [20,0,120,100]; both detections are closest to A.

    d1 = A (TP); d2 = [5,0,105,100] has IoU 95/105 with A, 85/115 with B: it claims the taken A and
    is a FP (the devkit does not fall back to B). Precision 1, 1/2 at recall 1/2, 1/2:
    11-point AP = 6/11 (r = 0 .. 0.5), area AP = 1/2.
    """
    targets = [_target([[0, 0, 100, 100], [20, 0, 120, 100]])]
    preds = [_pred([[0, 0, 100, 100], [5, 0, 105, 100]], [0.9, 0.8])]
    out = _voc(preds, targets)
    np.testing.assert_allclose(out["pr"][0][0], [1, 0.5])
    assert out["mAP"] == pytest.approx(6 / 11)
    assert _voc(preds, targets, ap_method="area")["mAP"] == pytest.approx(0.5)


def test_pixel_plus_one_convention():
    """Integer box [0,0,9,9] is 10 x 10 pixels; [0,0,9,4] is 10 x 5: IoU 50/100 = 0.5 -> TP.

    Without +1 they are 9 x 9 and 9 x 4: IoU 36/81 = 0.44 -> FP, AP 0.
    """
    preds, targets = [_pred([[0, 0, 9, 4]], [0.9])], [_target([[0, 0, 9, 9]])]
    assert _voc(preds, targets, pixel_plus_one=True)["mAP"] == pytest.approx(1.0)
    assert _voc(preds, targets, pixel_plus_one=False)["mAP"] == 0.0


def test_iou_threshold_is_inclusive():
    """IoU exactly 0.5 ([0,0,10,5] in [0,0,10,10]) is a match, as the devkit's ">=" says."""
    preds, targets = [_pred([[0, 0, 10, 5]], [0.9])], [_target([[0, 0, 10, 10]])]
    assert _voc(preds, targets)["mAP"] == pytest.approx(1.0)
    assert _voc(preds, targets, iou_threshold=0.51)["mAP"] == 0.0


def test_classes_and_images_are_kept_apart():
    """Class 1's detection on a class-0 object, and a detection in the wrong image, are FPs."""
    targets = [_target([G1], labels=[0]), _target([G2], labels=[1])]
    preds = [_pred([G1, G1], [0.9, 0.8], labels=[0, 1]), _pred([G1], [0.7], labels=[1])]
    out = _voc(preds, targets)
    assert out["ap"][0] == pytest.approx(1.0)
    assert out["ap"][1] == 0.0  # both class-1 detections miss G2
    assert out["mAP"] == pytest.approx(0.5)
    assert sorted(out["pr"]) == [0, 1]


def test_class_without_positives_is_left_out():
    targets = [_target([G1, G2], difficult=[False, True], labels=[0, 1])]
    out = _voc([_pred([G1, G2], [0.9, 0.8], labels=[0, 1])], targets)
    assert list(out["ap"]) == [0] and out["mAP"] == pytest.approx(1.0)


def test_class_agnostic_pools_labels():
    """Labels are ignored: the class-1 detection on a class-0 object is a TP. Fig. 5 of the paper."""
    targets = [_target([G1, G2], labels=[0, 1])]
    preds = [_pred([G1, FAR, G2], [0.9, 0.8, 0.7], labels=[1, 0, 3])]
    metric = ClassAgnosticPR()
    metric.update(preds, targets)
    out = metric.compute()
    assert out["precision"] == pytest.approx([1, 0.5, 2 / 3])
    assert out["recall"] == pytest.approx([0.5, 0.5, 1])
    assert out["AP"] == pytest.approx((6 + 5 * 2 / 3) / 11)  # r <= .5 -> 1, r > .5 -> 2/3
    assert isinstance(out["precision"], list) and type(out["AP"]) is float
    unlabeled = ClassAgnosticPR(ap_method="area")
    unlabeled.update([{k: v for k, v in p.items() if k != "labels"} for p in preds], targets)
    assert unlabeled.compute()["AP"] == pytest.approx(0.5 + 0.5 * 2 / 3)


# A direct transcription of VOCevaldet.m's loops, as an independent reference on random data.
def _devkit_reference(preds, targets, cls, iou_threshold=0.5, plus_one=False):
    extra = 1.0 if plus_one else 0.0
    gts = [(t["boxes"][t["labels"] == cls], t["ignore"][t["labels"] == cls]) for t in targets]
    detected = [np.zeros(len(b), bool) for b, _ in gts]
    npos = sum(int((~d).sum()) for _, d in gts)
    dets = [(s, i, b) for i, p in enumerate(preds) for b, s, l in zip(p["boxes"], p["scores"], p["labels"]) if l == cls]
    dets.sort(key=lambda d: -d[0])  # Python's sort is stable, like MATLAB's
    tp, fp = [], []
    for _, image, bb in dets:
        ovmax, jmax = -np.inf, -1
        for j, g in enumerate(gts[image][0]):
            iw = min(bb[2], g[2]) - max(bb[0], g[0]) + extra
            ih = min(bb[3], g[3]) - max(bb[1], g[1]) + extra
            if iw > 0 and ih > 0:
                area_d = (bb[2] - bb[0] + extra) * (bb[3] - bb[1] + extra)
                ua = area_d + (g[2] - g[0] + extra) * (g[3] - g[1] + extra) - iw * ih
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        t = f = 0
        if ovmax >= iou_threshold:
            if not gts[image][1][jmax]:
                if not detected[image][jmax]:
                    t, detected[image][jmax] = 1, True
                else:
                    f = 1
        else:
            f = 1
        tp.append(t)
        fp.append(f)
    tp, fp = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
    keep = (tp + fp) > 0  # rows with tp = fp = 0 at the start are 0/0 in MATLAB
    rec, prec = tp / npos, np.divide(tp, tp + fp, out=np.zeros_like(tp), where=keep)
    ap11 = sum(max(prec[rec >= k / 10], default=0.0) for k in range(11)) / 11
    mrec, mpre = [0.0, *rec[keep], 1.0], [0.0, *prec[keep], 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    area = sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
    return ap11, area, npos


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("plus_one", [False, True])
def test_matches_a_devkit_transcription_on_random_data(seed, plus_one):
    preds, targets = random_fixture(seed, num_images=20, num_classes=3, crowd_rate=0.2, score_decimals=1)
    out = _voc(preds, targets, pixel_plus_one=plus_one)
    area = _voc(preds, targets, pixel_plus_one=plus_one, ap_method="area")
    for cls in range(3):
        ap11, ap_area, npos = _devkit_reference(preds, targets, cls, plus_one=plus_one)
        if npos == 0:
            assert cls not in out["ap"]
        else:
            assert out["ap"][cls] == pytest.approx(ap11, abs=1e-12)
            assert area["ap"][cls] == pytest.approx(ap_area, abs=1e-12)
    assert len(out["ap"]) >= 2


def test_tensor_inputs_and_reset():
    preds, targets = random_fixture(2, num_images=10, num_classes=3)
    as_tensors = [{k: torch.as_tensor(v) for k, v in d.items()} for d in preds]
    metric = VOCMetric()
    metric.update(as_tensors, targets)
    first = metric.compute()
    assert first["mAP"] == pytest.approx(_voc(preds, targets)["mAP"])
    metric.reset()
    metric.update(preds[:1], targets[:1])
    assert metric.num_images == 1
    with pytest.raises(ValueError, match="AP method"):
        VOCMetric(ap_method="11-point")


def test_empty_images_and_no_objects():
    metric = VOCMetric()
    assert np.isnan(metric.compute()["mAP"]) and metric.compute()["ap"] == {}
    # An image without objects still contributes its detections as FPs; one without detections
    # still contributes its objects to recall: FP (.9) then TP (.5) of 2 objects.
    metric.update([_pred([G1], [0.9]), _pred([G1], [0.5]), _pred([], [])],
                  [_target([]), _target([G1]), _target([G2])])
    out = metric.compute()
    np.testing.assert_allclose(out["pr"][0][0], [0, 0.5])
    np.testing.assert_allclose(out["pr"][0][1], [0, 0.5])
    assert out["mAP"] == pytest.approx(6 * 0.5 / 11)
    agnostic = ClassAgnosticPR()
    assert np.isnan(agnostic.compute()["AP"])
