"""The §4.2.1 classifier: crop labelling rules, crop sampling, loss, checkpoint, resume, CLI errors."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from multibox.engine.trainer import train
from multibox.jobs.train import train_classifier
from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint
from multibox.modeling.classifier import Classifier
from multibox.modeling.losses import ClassifierLoss
from multibox.cli import main
from multibox.data.classifier_samples import UNLABELLED, ClassifierSamples, collate_crops, is_positive, label_windows, negative_window
from multibox.data.dataset import DetectionDataset, ImageRecord
from multibox.errors import UserError

BG = 5  # background index of a 5-class dataset


class Boxes(DetectionDataset):
    """Hand-made records over grey images."""

    class_names = ["a", "b", "c", "d", "e"]
    name = "hand-made"

    def __init__(self, records: list[ImageRecord]) -> None:
        self.records = records

    def load_image(self, index, target_size=None):
        r = self.records[index]
        return Image.new("RGB", (r.width, r.height), (100 + 10 * index, 50, 50))


def iou_with(window, boxes):
    from torchvision.ops import box_iou

    return box_iou(torch.tensor([window], dtype=torch.float64), torch.tensor(boxes, dtype=torch.float64))[0]


@pytest.mark.parametrize("window,expected", [
    ([0, 0, 10, 10], 0),            # IoU 1 with object a
    ([0, 0, 10, 20], 0),            # IoU exactly 0.5: positive (>= 0.5)
    ([0, 0, 10, 21], UNLABELLED),   # IoU 0.476: neither
    ([0, 0, 10, 49], UNLABELLED),   # IoU 0.204: neither
    ([0, 0, 10, 50], BG),           # IoU exactly 0.2: background (<= 0.2)
    ([0, 0, 10, 51], BG),
    ([20, 0, 30, 12], 1),           # IoU 0.83 with b
    ([40, 0, 50, 10], UNLABELLED),  # IoU 1 with the ignored object: never a positive
    ([40, 0, 50, 40], UNLABELLED),  # IoU 0.25 with the ignored object: no negative either
    ([40, 0, 50, 50], BG),          # IoU 0.2 with the ignored object
    ([60, 60, 70, 70], BG),         # nothing near
])
def test_window_labels_follow_the_paper_thresholds(window, expected):
    boxes = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], dtype=torch.float32)
    labels, ignore = torch.tensor([0, 1, 2]), torch.tensor([False, False, True])
    assert label_windows(torch.tensor([window], dtype=torch.float32), boxes, labels, ignore, BG).tolist() == [expected]


def test_window_closest_to_an_ignored_object_is_no_positive_and_empty_image_is_background():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 11]], dtype=torch.float32)
    window = torch.tensor([[0, 0, 10, 11]], dtype=torch.float32)  # IoU 0.91 with a, 1.0 with the ignored one
    assert label_windows(window, boxes, torch.tensor([0, 3]), torch.tensor([False, True]), BG).tolist() == [UNLABELLED]
    none = torch.zeros(0, 4)
    no_labels, no_ignore = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool)
    assert label_windows(window, none, no_labels, no_ignore, BG).tolist() == [BG]


@pytest.mark.parametrize("ratio,pattern", [(2.0, [0, 0, 1] * 4), (1.0, [0, 1] * 6), (0.0, [1] * 12),
                                           (3.0, [0, 0, 0, 1] * 3)])
def test_positive_negative_ratio_is_exact_per_run_of_positions(ratio, pattern):
    assert [int(is_positive(p, ratio)) for p in range(12)] == pattern


def synthetic(n=8, size=64):
    from multibox.data.synthetic import SyntheticDataset

    return SyntheticDataset("train", size=n, image_size=size)


def test_drawn_crops_obey_the_rules_and_are_reproducible():
    dataset = synthetic()
    samples = ClassifierSamples(dataset, 32, negatives_per_positive=2.0, seed=3)
    draws = [samples.draw(p % len(dataset), 1, p) for p in range(30)]
    assert sum(label != BG for _, _, label, _ in draws) == 10  # 1 : 2
    for i, window, label, _ in draws:
        r = dataset.records[i]
        iou = iou_with(window.tolist(), r.boxes.tolist()) if len(r.boxes) else torch.zeros(0)
        if label == BG:
            assert len(iou) == 0 or iou.max() <= 0.2  # every object, ignored ones included
        else:
            best = int(iou.argmax())
            assert iou[best] >= 0.5 and not r.ignore[best] and r.labels[best] == label
    again = [samples.draw(p % len(dataset), 1, p) for p in range(30)]
    assert all(a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:] for a, b in zip(draws, again))
    first, second = samples[(2, 1, 5)], samples[(2, 1, 5)]
    assert first["image"].shape == (3, 32, 32) and first["image"].dtype == torch.uint8
    assert torch.equal(first["image"], second["image"]) and first["label"] == second["label"]
    images, targets, problems = collate_crops([samples[(i, 0, i)] for i in range(4)])
    assert images.shape == (4, 3, 32, 32) and targets["labels"].shape == (4,) and problems == []


def dense_record() -> ImageRecord:
    """A 12 x 12 image annotated with every integer box of side >= 2 px: any window (side >= 1.2 px, 10 %
    of the image) overlaps one of them by more than 0.2, so no negative exists."""
    x0, y0, w, h = np.meshgrid(np.arange(11), np.arange(11), np.arange(2, 13), np.arange(2, 13), indexing="ij")
    ok = (x0 + w <= 12) & (y0 + h <= 12)
    boxes = np.stack([x0[ok], y0[ok], (x0 + w)[ok], (y0 + h)[ok]], axis=1)
    return ImageRecord("dense", None, 12, 12, boxes, np.zeros(len(boxes), np.int64), np.zeros(len(boxes), bool))


def test_one_object_filling_the_image_still_has_small_background_windows():
    """The paper's rule is Jaccard: a small window inside a huge object has IoU <= 0.2 (a localizer box
    like it is a false positive at test time, so background is the right label)."""
    full = ImageRecord("full", None, 40, 40, [[0, 0, 40, 40]], [1], [False])
    window, label = negative_window(np.random.default_rng(0), full, BG)
    assert label == BG and iou_with(window.tolist(), [[0, 0, 40, 40]]).max() <= 0.2


def test_covered_image_gives_its_negative_to_the_next_image_and_all_covered_is_an_error():
    covered = dense_record()
    free = ImageRecord("free", None, 40, 40, [[0, 0, 10, 10]], [2], [False])
    assert negative_window(np.random.default_rng(0), covered, BG) is None
    samples = ClassifierSamples(Boxes([covered, free]), 16, negatives_per_positive=1.0)
    index, window, label, _ = samples.draw(0, 0, 0)  # position 0 is a negative
    assert (index, label) == (1, BG) and iou_with(window.tolist(), [[0, 0, 10, 10]]).max() <= 0.2
    with pytest.raises(UserError, match="no background"):
        ClassifierSamples(Boxes([covered, covered]), 16, negatives_per_positive=1.0).draw(0, 0, 0)


def test_image_with_only_ignored_objects_gives_no_positive():
    only_ignored = ImageRecord("ign", None, 40, 40, [[0, 0, 20, 20]], [1], [True])
    usable = ImageRecord("ok", None, 40, 40, [[10, 10, 30, 30]], [4], [False])
    samples = ClassifierSamples(Boxes([only_ignored, usable]), 16, negatives_per_positive=0.0)
    assert [samples.draw(0, 0, p)[::2] for p in range(5)] == [(1, 4)] * 5
    with pytest.raises(UserError, match="no object"):
        ClassifierSamples(Boxes([only_ignored]), 16, negatives_per_positive=0.0).draw(0, 0, 0)


def test_loss_is_named_unweighted_cross_entropy():
    loss = ClassifierLoss()
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    terms = loss({"logits": logits}, {"labels": torch.tensor([0, 2])})
    expected = -(torch.log_softmax(logits, 1)[[0, 1], [0, 2]]).mean()
    assert set(terms) == {"cls"} and loss.weights() == {"cls": 1.0}
    assert math.isclose(float(terms["cls"]), float(expected), rel_tol=1e-6)


def test_train_classifier_checkpoint_and_exact_resume(tiny_cfg, tmp_path):
    tiny_cfg.train.steps = 4
    straight = load_checkpoint(train_classifier(tiny_cfg, tmp_path / "a"))
    tiny_cfg.train.steps = 2
    train_classifier(tiny_cfg, tmp_path / "b")
    tiny_cfg.train.steps = 4
    resumed = load_checkpoint(train_classifier(tiny_cfg, tmp_path / "b", resume=True))
    assert straight["task"] == resumed["task"] == "classifier" and resumed["step"] == 4
    assert straight["class_names"] == ["rectangle", "ellipse", "triangle", "diamond", "cross"]
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    model, cfg = model_from_checkpoint(resumed, "classifier")
    assert isinstance(model, Classifier) and model.num_outputs == 6 and cfg.model.classifier_region == "max"
    with pytest.raises(UserError, match="holds a classifier, not a localizer"):
        model_from_checkpoint(resumed)
    with pytest.raises(UserError, match="not a classifier"):  # resuming a localizer run as a classifier
        tiny_cfg.train.steps = 1
        loc_dir = tmp_path / "loc"
        train(tiny_cfg, loc_dir)
        train_classifier(tiny_cfg, loc_dir, resume=True)


@pytest.mark.parametrize("argv,fragment", [
    (["--exclude-classes", "rectangle,blob"], "unknown class 'blob'"),
    (["--negatives-per-positive", "-1"], "--negatives-per-positive"),
    (["--region", "huge"], "--region"),
    (["--exclude-classes", "a,,b"], "comma-separated"),
])
def test_train_classifier_bad_flags_exit_2_with_one_line(argv, fragment, tmp_path, capsys):
    try:
        code = main(["train-classifier", "--out", str(tmp_path / "o"), "--steps", "1", *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err
