"""§4.1 coverage crop sampler: exact coverage, equal buckets, reproducibility, impossible buckets, GT clipping."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from multibox.data.dataset import ImageRecord
from multibox.data.crops import BUCKETS, CoverageCropSampler, bucket_of, clip_boxes_to_crop, coverage_grid, crop_coverage, decode_size_for_crop, samples_per_image


def _records() -> list[ImageRecord]:
    """Images where every bucket is reachable: a few objects of varied size, not filling the image."""
    return [
        ImageRecord(
            "a", None, 640, 480, [[100, 100, 200, 220], [300, 50, 600, 400], [150, 150, 180, 170]], [0, 1, 2], [0, 0, 0]
        ),
        ImageRecord("b", None, 500, 375, [[20, 30, 120, 300]], [0], [0]),
        ImageRecord("c", None, 300, 600, [[10, 10, 60, 60], [200, 400, 290, 590]], [1, 1], [0, 1]),
    ]


def _raster_coverage(boxes: np.ndarray, crop: np.ndarray, step: float = 0.25) -> float:
    """Brute force: the share of pixel-grid sample points of the crop inside some box."""
    xs = np.arange(crop[0] + step / 2, crop[2], step)
    ys = np.arange(crop[1] + step / 2, crop[3], step)
    px, py = np.meshgrid(xs, ys)
    inside = np.zeros(px.shape, bool)
    for b in boxes:
        inside |= (px >= b[0]) & (px < b[2]) & (py >= b[1]) & (py < b[3])
    return float(inside.mean())


def test_coverage_is_the_exact_union_area():
    rng = np.random.default_rng(1)
    for _ in range(5):
        xy = rng.uniform(0, 60, (6, 2)).round()
        boxes = np.concatenate([xy, xy + rng.uniform(1, 40, (6, 2)).round()], axis=1)  # overlapping boxes
        crops = np.array([[0, 0, 64, 64], [10, 5, 40, 35], [30.5, 20.25, 60.5, 50.25]])
        exact = crop_coverage(coverage_grid(boxes, 64, 64), crops)
        brute = [_raster_coverage(np.clip(boxes, 0, 64), c) for c in crops]
        np.testing.assert_allclose(exact, brute, atol=2e-3)


def test_coverage_of_known_cases():
    grid = coverage_grid(np.array([[0, 0, 10, 10], [5, 5, 15, 15]]), 20, 20)  # union area 175
    assert crop_coverage(grid, np.array([[0, 0, 20, 20]]))[0] == pytest.approx(175 / 400)
    assert crop_coverage(grid, np.array([[0, 0, 10, 10]]))[0] == pytest.approx(1.0)
    assert crop_coverage(grid, np.array([[15, 15, 20, 20]]))[0] == 0.0
    assert crop_coverage(coverage_grid(np.zeros((0, 4)), 20, 20), np.array([[0, 0, 5, 5]]))[0] == 0.0


def test_bucket_edges():
    assert bucket_of(np.array([0.0, 0.0499, 0.05, 0.1499, 0.15, 0.4999, 0.5, 1.0])).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def _draw(seed: int, per_image: int = 200):
    sampler, rng = CoverageCropSampler(), np.random.default_rng(seed)
    crops = np.array([[sampler(rng, r, i) for i in range(per_image)] for r in _records()])  # [3, per_image, 4]
    return sampler, crops


def test_buckets_are_equal_within_5_percent_measured_independently():
    sampler, crops = _draw(seed=0)
    counts = np.zeros(len(BUCKETS), int)
    for record, image_crops in zip(_records(), crops):
        coverage = crop_coverage(coverage_grid(record.boxes, record.width, record.height), image_crops)
        counts += np.bincount(bucket_of(coverage), minlength=len(BUCKETS))
    assert counts.sum() == 600 and abs(counts - 150).max() <= 0.05 * 150, counts
    assert sampler.requested.tolist() == [150] * 4 and sampler.produced.tolist() == counts.tolist()


def test_crops_are_squares_inside_the_image():
    _, crops = _draw(seed=3, per_image=64)
    for record, image_crops in zip(_records(), crops):
        side_w, side_h = image_crops[:, 2] - image_crops[:, 0], image_crops[:, 3] - image_crops[:, 1]
        np.testing.assert_allclose(side_w, side_h, rtol=1e-9)
        assert (image_crops[:, :2] >= -1e-9).all()
        assert (image_crops[:, 2] <= record.width + 1e-9).all() and (image_crops[:, 3] <= record.height + 1e-9).all()
        assert side_w.min() >= 0.1 * min(record.width, record.height) - 1e-9
    assert np.unique(crops[0].round(3), axis=0).shape[0] == 64  # not one crop repeated


def test_same_seed_same_crops_other_seed_other_crops():
    _, first = _draw(seed=7, per_image=40)
    _, again = _draw(seed=7, per_image=40)
    _, other = _draw(seed=8, per_image=40)
    assert np.array_equal(first, again) and not np.allclose(first, other)


def test_impossible_buckets_go_to_the_nearest_feasible_one_and_are_counted():
    sampler, rng = CoverageCropSampler(), np.random.default_rng(0)
    full = ImageRecord("full", None, 300, 200, [[0, 0, 300, 200]], [0], [0])  # only 100 % crops exist
    negative = ImageRecord("neg", None, 300, 200)  # only 0 % crops exist
    full_buckets = [
        int(bucket_of(crop_coverage(coverage_grid(full.boxes, 300, 200), sampler(rng, full, i)[None])[0]))
        for i in range(8)
    ]
    assert full_buckets == [3] * 8 and sampler.redistributed.tolist() == [2, 2, 2, 0]
    for i in range(8):
        sampler(rng, negative, i)
    assert sampler.redistributed.tolist() == [2, 4, 4, 2] and sampler.produced.tolist() == [8, 0, 0, 8]
    assert "redistributed 12" in sampler.stats()


def test_sampler_memory_does_not_grow_with_crops_drawn():
    sampler, rng, record = CoverageCropSampler(), np.random.default_rng(0), _records()[0]
    for i in range(200):  # warm up caches of numpy/allocator
        sampler(rng, record, i)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(1000):
        sampler(rng, record, i)
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 20_000, grown  # bytes: counters only, no per-crop state (a list of crops would be ~100 kB)


def test_clip_boxes_to_crop_rule():
    boxes = np.array([[10, 10, 30, 30], [90, 10, 130, 30], [70, 70, 110, 90], [200, 200, 220, 220]], np.float64)
    crop = np.array([0, 0, 100, 100])
    out, index, ignore = clip_boxes_to_crop(boxes, crop, ignore=np.array([False, False, False, False]))
    # box 0 fully inside; box 1 keeps 10/40 of its width -> ignore; box 2 keeps 30/40 -> positive; box 3 outside.
    assert index.tolist() == [0, 1, 2] and ignore.tolist() == [False, True, False]
    np.testing.assert_allclose(out, [[0.1, 0.1, 0.3, 0.3], [0.9, 0.1, 1.0, 0.3], [0.7, 0.7, 1.0, 0.9]], atol=1e-6)
    _, _, ignore = clip_boxes_to_crop(boxes[:1], crop, ignore=np.array([True]))
    assert ignore.tolist() == [True]  # an ignored box stays ignored
    _, _, ignore = clip_boxes_to_crop(boxes[:3], crop, min_visible=0.8)
    assert ignore.tolist() == [False, True, True]


def test_samples_per_image_meets_the_target_in_whole_bucket_rounds():
    assert samples_per_image(11_540, 10_000_000) == 868  # ceil(866.6) -> 867 -> next multiple of 4
    assert samples_per_image(11_540, 10_000_000) * 11_540 >= 10_000_000
    assert samples_per_image(10, 3) == 4 and samples_per_image(0, 100) == 0


def test_decode_size_for_crop_keeps_the_crop_at_input_resolution(tmp_path):
    from fixtures.datasets import write_image

    from multibox.data.images import load_rgb

    crop = np.array([400.0, 300.0, 800.0, 700.0])  # a 400 px square of a 1600x1200 image, network input 100
    size = decode_size_for_crop(1600, 1200, crop, 100)
    assert size == (400, 300)
    image = load_rgb(write_image(tmp_path / "big.jpg", 1600, 1200), target_size=size)
    scale = image.width / 1600
    assert image.size == (400, 300) and (crop[2] - crop[0]) * scale >= 100
    assert decode_size_for_crop(1600, 1200, crop, 500) == (1600, 1200)  # never asks for more than the file
