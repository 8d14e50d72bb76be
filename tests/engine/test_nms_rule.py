"""The localizer's NMS threshold from the training boxes (engine.nms_rule): the paper's 0.5 where objects
overlap each other, lower (down to the floor) where they never do, and the trained threshold is the one
every loaded model uses."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from multibox.config import Config
from multibox.data import ImageRecord
from multibox.engine.checkpoint import save_checkpoint
from multibox.engine.nms_rule import NMS_FLOOR, PAPER_NMS_IOU, auto_nms_iou, configured_nms_iou, nearest_overlaps
from multibox.engine.tasks import resolve_config
from multibox.inference.localizer import Localizer
from multibox.modeling.localizer import build_grid_model


def record(name: str, boxes: list, ignore: list | None = None) -> ImageRecord:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    flags = np.zeros(len(b), bool) if ignore is None else np.asarray(ignore)
    return ImageRecord(name, None, 200, 200, b, np.zeros(len(b), np.int64), flags)


def pairs(shift: float, n: int = 30) -> SimpleNamespace:
    """n images, each two 40 px squares, the second ``shift`` px right of the first (0: the same box)."""
    return SimpleNamespace(records=[record(str(i), [[10, 10, 50, 50], [10 + shift, 10, 50 + shift, 50]])
                                    for i in range(n)], name="pairs")


def pair_iou(shift: float) -> float:
    return (40 - shift) / (40 + shift)


def test_objects_that_never_overlap_get_the_floor():
    apart = pairs(60)  # 20 px of ground between the two
    assert np.allclose(nearest_overlaps(apart), 0.0) and len(nearest_overlaps(apart)) == 60
    assert auto_nms_iou(apart) == NMS_FLOOR == 0.3


def test_overlapping_objects_keep_the_papers_threshold():
    crowd = pairs(10)  # IoU 0.6 with each other
    assert np.allclose(nearest_overlaps(crowd), pair_iou(10))
    assert auto_nms_iou(crowd) == PAPER_NMS_IOU == 0.5


def test_in_between_the_threshold_is_the_overlap_plus_the_margin_rounded():
    touching = pairs(24)  # IoU 16 / 64 = 0.25: NMS must keep two right boxes of them
    assert pair_iou(24) == pytest.approx(0.25)
    assert auto_nms_iou(touching) == 0.45  # 0.25 + 0.2
    for shift in (8, 16, 24, 32, 40, 60):
        assert NMS_FLOOR <= auto_nms_iou(pairs(shift)) <= PAPER_NMS_IOU
        assert auto_nms_iou(pairs(shift)) >= min(pair_iou(shift), PAPER_NMS_IOU)  # never below how much they overlap


def test_the_rule_covers_the_99th_percentile_not_one_odd_pair():
    data = pairs(60, n=200)
    data.records[0] = record("odd", [[10, 10, 50, 50], [14, 10, 54, 50]])  # one pair at IoU 0.82 in 400 objects
    assert auto_nms_iou(data) == NMS_FLOOR


def test_ignored_objects_are_neighbours_but_not_counted():
    data = SimpleNamespace(records=[record("a", [[10, 10, 50, 50], [14, 10, 54, 50]], ignore=[False, True])], name="x")
    assert np.allclose(nearest_overlaps(data), [pair_iou(4)])  # one object counted, its ignored neighbour seen


def test_without_two_objects_in_an_image_nothing_says_how_close_they_come():
    singles = SimpleNamespace(records=[record(str(i), [[10, 10, 50, 50]]) for i in range(5)] + [record("e", [])],
                              name="singles")
    assert len(nearest_overlaps(singles)) == 0 and auto_nms_iou(singles) == PAPER_NMS_IOU


def test_resolve_config_fills_it_keeps_a_given_one_and_the_paper_preset_keeps_0_5():
    assert resolve_config(Config(), pairs(60)).model.nms_iou == NMS_FLOOR
    given = Config()
    given.model.nms_iou = 0.45
    assert resolve_config(given, pairs(60)).model.nms_iou == 0.45
    assert resolve_config(Config.preset("paper"), pairs(60)).model.nms_iou == 0.5  # §4.1, exactly
    assert configured_nms_iou(Config()) == 0.5  # a config from before the field: the paper's


def test_a_checkpoint_carries_its_threshold_to_the_localizer(tmp_path):
    cfg = Config()
    cfg.model.backbone, cfg.model.image_size, cfg.model.stride, cfg.model.weights = "tiny", 64, 16, None
    m = cfg.model
    model = build_grid_model("tiny", torch.tensor([[8.0, 8.0], [20.0, 14.0]]), 64, None, m.levels, m.stride,
                             m.conv_hidden, m.conv_depth, m.conv_head, m.feature_norm)
    for value, want in ((0.3, 0.3), (None, 0.5)):  # None: saved before the rule existed
        cfg.model.nms_iou = value
        path = tmp_path / f"{value}.pt"
        save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict(), "kind": "localizer"})
        assert Localizer.from_checkpoint(path).nms_iou == want
