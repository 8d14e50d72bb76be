"""The conv head's input size and map stride from the data: stride 16 unless the images would have to be
enlarged for it; then stride 8 at half the size, the objects over the same number of cells."""

from types import SimpleNamespace

import numpy as np

from multibox.config import Config
from multibox.engine.tasks import auto_geometry, auto_image_size, resolve_config
from multibox.data import ImageRecord


def dataset(image_side: int, box_side: float, n: int = 40):
    rng = np.random.default_rng(0)
    records = []
    for i in range(4):
        xy = rng.uniform(0, image_side - box_side, (n, 2))
        sides = box_side * rng.uniform(0.8, 1.25, (n, 1))
        boxes = np.concatenate([xy, xy + sides], 1).astype(np.float32)
        records.append(ImageRecord(str(i), None, image_side, image_side, boxes, np.zeros(n, np.int64), np.zeros(n, bool)))
    return SimpleNamespace(records=records, name="fake")


def test_small_objects_in_small_images_take_stride_8_at_half_the_size():
    small = dataset(400, 36)  # aerial tiles: the stride-16 rule asks for ~700 px
    s16 = auto_image_size(small)
    assert s16 > 1.25 * 400
    size, stride = auto_geometry(small, None, None)
    assert stride == 8 and abs(size - s16 / 2) <= 16 and size % 32 == 0
    assert auto_geometry(small, None, 16) == (s16, 16)  # a stride the user sets is kept
    assert auto_geometry(small, 512, None) == (512, 16)  # so is a size: the rule does not second-guess it


def test_objects_large_enough_keep_stride_16():
    photos = dataset(640, 160)
    size, stride = auto_geometry(photos, None, None)
    assert stride == 16 and size == auto_image_size(photos) and size <= 1.25 * 640


def test_resolve_config_fills_both_and_the_fc_head_keeps_its_size():
    cfg = Config()
    resolve_config(cfg, dataset(400, 36))
    assert (cfg.model.image_size, cfg.model.stride) == auto_geometry(dataset(400, 36), None, None)
    fc = Config.preset("paper")
    resolve_config(fc, dataset(400, 36))
    assert fc.model.image_size == 220 and fc.model.stride == 16


def test_the_fused_levels_follow_the_stride_unless_set():
    small, photos = dataset(400, 36), dataset(640, 160)
    cfg = resolve_config(Config(), small)
    assert cfg.model.stride == 8 and cfg.model.levels == [4, 8]  # the map's stride and the next finer one
    cfg = resolve_config(Config(), photos)
    assert cfg.model.stride == 16 and cfg.model.levels == [8, 16]
    cfg = Config()
    cfg.model.levels = [8, 16]
    assert resolve_config(cfg, small).model.levels == [8, 16]  # a user's levels are kept
    assert resolve_config(Config.preset("paper"), small).model.levels is None  # the FC head fuses no levels
