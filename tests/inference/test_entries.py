"""detections.json entries: pixel boxes with 2 decimals, scores with 4 significant digits, one label per box,
and read back by the evaluation's reader."""

import json

import numpy as np
import torch

from multibox.data.synthetic import SyntheticDataset
from multibox.evaluation.detection_files import read_detections
from multibox.inference.entries import detection_entry, significant


def test_entry_keeps_weak_scores_and_rounds_boxes():
    det = {"boxes": torch.tensor([[1.234, 2.345, 30.456, 40.5678]]), "scores": torch.tensor([3.21234e-6])}
    entry = detection_entry(det, 64, 48)
    assert entry == {"width": 64, "height": 48, "boxes": [[1.23, 2.35, 30.46, 40.57]], "scores": [3.212e-06]}
    assert "path" not in entry and detection_entry(det, 64, 48, path="a/x.jpg")["path"] == "a/x.jpg"


def test_entry_with_classes_has_one_label_per_box():
    det = {"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), "scores": torch.tensor([0.8, 0.3]),
           "labels": torch.tensor([1, 0]), "label_scores": torch.tensor([0.987654, 0.5])}
    entry = detection_entry(det, 32, 32, ["cat", "dog"])
    assert entry["labels"] == ["dog", "cat"] and entry["label_ids"] == [1, 0] and entry["label_scores"] == [0.9877, 0.5]
    assert len(entry["boxes"]) == len(entry["scores"]) == len(entry["labels"]) == 2


def test_scores_keep_four_significant_digits():
    values = torch.from_numpy(np.random.default_rng(0).uniform(-12, 0, 2000)).exp()  # 6e-6 .. 1, log-uniform
    kept = torch.tensor(significant(values), dtype=torch.float64)
    assert (kept > 0).all()  # never rounded to 0.0
    assert ((kept - values).abs() <= 5e-4 * values).all()  # relative error within half a unit of the 4th digit


def test_entries_with_label_scores_read_back_for_evaluation(tmp_path):
    dataset = SyntheticDataset("test", size=2, image_size=64, seed=3)
    entries = []
    for record in dataset.records:
        boxes = torch.from_numpy(record.boxes)
        det = {"boxes": boxes, "scores": torch.linspace(0.9, 0.1, len(boxes)),
               "labels": torch.from_numpy(record.labels), "label_scores": torch.full((len(boxes),), 0.5)}
        entries.append(detection_entry(det, record.width, record.height, list(dataset.class_names),
                                       path=record.image_id) | {"image_id": record.image_id})
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(entries))
    loaded = read_detections(path, dataset)
    assert loaded.unmatched == 0
    for record, det in zip(dataset.records, loaded.detections):
        assert np.allclose(det["boxes"].numpy(), record.boxes, atol=0.005)
        assert det["labels"].tolist() == record.labels.tolist()
