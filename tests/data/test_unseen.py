"""Unseen classes (§4.4.2): excluded classes never reach training; evaluation on a class subset."""

import numpy as np
import pytest
import torch

from multibox.data.build import load_split
from multibox.engine.trainer import train
from multibox.jobs.evaluate import evaluate
from multibox.jobs.train import train_classifier
from multibox.cli import main
from multibox.data.classifier_samples import ClassifierSamples
from multibox.data.pipeline import TrainSamples
from multibox.data.synthetic import SyntheticDataset
from multibox.errors import UserError
from multibox.evaluation.voc import ClassAgnosticPR
from multibox.data.unseen import only_classes, without_classes


def test_without_classes_drops_exactly_the_images_holding_them():
    dataset = SyntheticDataset("train", size=30, image_size=48)
    subset = without_classes(dataset, ["ellipse", "cross"])
    holds = [bool(np.isin(r.labels, [1, 4]).any()) for r in dataset.records]
    assert 0 < len(subset) == holds.count(False) < len(dataset)
    assert [r.image_id for r in subset.records] == [r.image_id for r, h in zip(dataset.records, holds) if not h]
    assert np.array_equal(np.asarray(subset.load_image(0)), np.asarray(dataset.load_image(subset.kept[0])))
    assert without_classes(dataset, []) is dataset
    with pytest.raises(UserError, match="data.exclude_classes: unknown class 'blob'"):
        without_classes(dataset, ["blob"])


def test_an_excluded_class_never_reaches_a_training_target(tiny_cfg, tmp_path, monkeypatch):
    """Spy on every sample the localizer and the classifier draw while training with ellipse excluded."""
    tiny_cfg.data.synthetic_sizes["train"] = 24
    tiny_cfg.data.exclude_classes = ["ellipse"]
    tiny_cfg.train.steps = 3
    full = load_split(tiny_cfg, "train")
    ellipse_images = {r.image_id for r in full.records if 1 in r.labels}
    assert ellipse_images  # the test means something
    seen_images, seen_labels = set(), []
    draw, get = TrainSamples.draw, ClassifierSamples.__getitem__

    def spy_draw(self, index, epoch, position):
        seen_images.add(self.dataset.records[index].image_id)
        return draw(self, index, epoch, position)

    def spy_get(self, key):
        item = get(self, key)
        seen_labels.append(item["label"])
        return item

    monkeypatch.setattr(TrainSamples, "draw", spy_draw)
    monkeypatch.setattr(ClassifierSamples, "__getitem__", spy_get)
    state = torch.load(train(tiny_cfg, tmp_path / "loc"), weights_only=False)
    train_classifier(tiny_cfg, tmp_path / "cls")
    assert seen_images and not seen_images & ellipse_images
    assert len(seen_labels) >= 3 * tiny_cfg.train.batch_size and 1 not in seen_labels  # (+1 batch fetched at the stop)
    assert state["config"]["data"]["exclude_classes"] == ["ellipse"]


def test_other_classes_are_ignored_not_false_positives():
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]), "labels": torch.tensor([0, 1]),
                "ignore": torch.tensor([False, False])}]
    detections = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]]),
                   "scores": torch.tensor([0.9, 0.8, 0.7])}]
    restricted = only_classes(targets, [1])
    assert restricted[0]["ignore"].tolist() == [True, False] and targets[0]["ignore"].tolist() == [False, False]
    pr = ClassAgnosticPR()
    pr.update(detections, restricted)
    result = pr.compute()
    assert result["precision"] == [1.0, 0.5] and result["recall"] == [1.0, 1.0]  # the class-0 hit counts nowhere


def test_evaluate_on_a_class_subset(tiny_cfg, tmp_path, capsys):
    tiny_cfg.train.steps = 1
    model = train(tiny_cfg, tmp_path / "run")
    metrics = evaluate(model, tmp_path / "eval", split="test", device="cpu", classes=["triangle"])
    test = load_split(tiny_cfg, "test")
    triangles = sum(int(((r.labels == 2) & ~r.ignore).sum()) for r in test.records)
    assert metrics["num_objects"] == triangles and metrics["classes"] == ["triangle"]
    assert set(metrics["class_agnostic_pr"]) == {"AP", "precision", "recall"}
    capsys.readouterr()  # the training's progress bar
    for argv, fragment in [(["evaluate", "--model", str(model), "--out", str(tmp_path / "e"), "--classes", "blob"],
                            "--classes: unknown class 'blob'"),
                           (["train", "--out", str(tmp_path / "t"), "--steps", "1", "--exclude-classes", "cross,blob"],
                            "--exclude-classes: unknown class 'blob'")]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        errors = [line for line in err.splitlines() if "error:" in line]  # progress lines may come before it
        assert len(errors) == 1 and fragment in errors[0] and err.endswith(errors[0]) and "Traceback" not in err
