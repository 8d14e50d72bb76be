"""`multibox paper`: the plan's scaling, the per-image cost timing and the Markdown report (no training)."""

import numpy as np
import torch
from PIL import Image

from multibox.data.synthetic import SyntheticDataset
from multibox.engine.tasks import Task
from multibox.jobs.paper import (
    ONE_BOX_ROW,
    TOP10_ROW,
    Plan,
    claims,
    repeated_class_targets,
    shape_dataset,
    time_detector,
)
from multibox.reports.paper import write_report


def test_plan_scales_every_step_count_and_keeps_at_least_one():
    plan = Plan(localizer_steps=1000, classifier_steps=800, unseen_steps=1000).scaled(0.05)
    assert (plan.localizer_steps, plan.classifier_steps, plan.unseen_steps) == (50, 40, 50)
    assert Plan().scaled(1e-6).classifier_steps == 1 and Plan().scaled(1.0) == Plan()


class FakeDetector:
    """Localizer returning 3 boxes; score_boxes counted."""

    class localizer:
        @staticmethod
        def predict_batch(images, n):
            return [(torch.zeros(3, 4), torch.ones(3))]

    def __init__(self):
        self.scored = 0

    def score_boxes(self, images, boxes, conf):
        self.scored += 1
        return [{}]


def test_time_detector_keeps_each_images_fastest_pass_after_warm_up():
    fake = FakeDetector()
    timings = time_detector(fake, [Image.new("RGB", (8, 8))] * 4, repeats=2)
    assert fake.scored == 3 + 2 * 4 and len(timings.localizer) == len(timings.classifier) == 4
    summary = timings.summary(localizer_passes=10)
    assert summary["classifier_crops"] == 3 and summary["network_evaluations"] == 13
    assert summary["total_ms"] == summary["localizer_ms"] + summary["classifier_ms"]


def test_report_has_every_table_and_figure(tmp_path):
    names = ["a", "b"]
    rate = {"1": 0.1, "5": 0.2, "10": 0.3, "25": 0.4, "100": 0.5}
    ilsvrc = {"det@5": 0.5, "class@5": 1.0, "det@1": 0.25, "class@1": 0.75}
    cost = {"localizer_ms": 5.0, "classifier_ms": 7.0, "total_ms": 12.0, "localizer_inputs": 1,
            "classifier_crops": 10.0, "network_evaluations": 11.0}
    results = {
        "plan": {"localizer_steps": 10, "classifier_steps": 20, "unseen_steps": 30, "unseen_class": "b"},
        "dataset": "synthetic:test", "num_images": 3,
        "training_seconds": {"localizer": 60.0, "classifier": 120.0, "unseen": 180.0},
        "fig1": {"single": rate, "multiscale": rate, "priors": rate, "num_objects": 7},
        "table1": {"DeepMultiBox": {"a": 0.25, "b": 0.5, "mAP": 0.375}},
        "table2": {"Classify GT directly": ilsvrc, "DeepMultiBox, top 1 window": ilsvrc},
        "fig5": {"unseen": {"AP": 0.4, "detection_rate": rate, "num_objects": 4}},
        "cost": {"torch_threads": 2, "images": 3, "load_average": 1.5, "single scale": cost},
    }
    text = write_report(results, names, tmp_path).read_text()
    for fragment in ["| DeepMultiBox | 0.250 | 0.500 | **0.375** |",
                     "| Classify GT directly | 50.0 % | 100.0 % | 25.0 % | 75.0 % |",
                     "fig1_detection_rate.png", "fig5_unseen_pr.png",
                     "| single scale | 1 | 10.0 | 11.0 | 5.0 | 7.0 | 12.0 |",
                     "| 10 x 32 | 1.0 min |", "| unseen | 4 | 0.400 | 30.0 % |"]:
        assert fragment in text, fragment


# ------------------------------------------------------------------------------ one box per class, cross-dataset


def test_plan_scales_the_one_box_and_cross_dataset_networks_too():
    plan = Plan(one_box_steps=1000, cross_steps=500).scaled(0.1)
    assert (plan.one_box_steps, plan.cross_steps) == (100, 50)
    assert set(plan.cross_shapes[0]).isdisjoint(plan.cross_shapes[1])


def target(labels, ignore=None):
    labels = torch.tensor(labels, dtype=torch.int64)
    return {"boxes": torch.tensor([[10.0 * i, 0.0, 10.0 * i + 8, 8.0] for i in range(len(labels))]).reshape(-1, 4),
            "labels": labels, "ignore": torch.zeros(len(labels), dtype=torch.bool) if ignore is None else torch.tensor(ignore)}


def test_repeated_class_targets_keep_images_with_several_objects_of_a_class_and_count_only_those():
    targets = [target([0, 1]), target([2, 2, 3]), target([4, 4], ignore=[False, True]), target([])]
    keep, repeated = repeated_class_targets(targets)
    assert keep == [1]  # image 2's second class-4 object is ignored: one counted object of class 4
    assert repeated[0]["ignore"].tolist() == [False, False, True]


def test_claims_measure_det5_on_single_instance_images_and_detection_of_repeated_classes():
    targets = [target([0, 1]), target([2, 2])]
    hit = lambda t: {"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]}
    first_only = lambda t: {"boxes": t["boxes"][:1], "scores": torch.ones(1), "labels": t["labels"][:1]}
    guesses = {ONE_BOX_ROW: [hit(t) for t in targets], TOP10_ROW: [first_only(t) for t in targets]}
    agnostic = {"one box per class": [first_only(t) for t in targets], "DeepMultiBox": [hit(t) for t in targets]}
    out = claims(guesses, agnostic, targets)
    assert out["one_object_per_class"] == {"images": 1, "det@5": {ONE_BOX_ROW: 1.0, TOP10_ROW: 1.0}}
    several = out["several_of_a_class"]
    assert (several["images"], several["objects"]) == (1, 2)
    assert several["detection_rate"]["one box per class (all its boxes)"] == 0.5
    assert several["detection_rate"]["DeepMultiBox, top 100"] == 1.0 and several["detection_rate"]["DeepMultiBox, top 5"] == 1.0


def test_shape_datasets_draw_only_their_shapes_with_the_full_datasets_layouts():
    only = shape_dataset("test", ("rectangle", "ellipse"))
    assert only.name == "synthetic:test (rectangle,ellipse)" and len(only) == 300
    labels = np.concatenate([r.labels for r in only.records])
    assert set(labels.tolist()) == {0, 1}
    default, none = SyntheticDataset("test", size=5), SyntheticDataset("test", size=5, shapes=None)
    assert all((a.boxes == b.boxes).all() and (a.labels == b.labels).all() for a, b in zip(default.records, none.records))


def test_shape_task_trains_the_localizer_on_the_shape_dataset(monkeypatch):
    import multibox.jobs.paper as paper_job

    seen = {}
    monkeypatch.setattr(paper_job, "shape_dataset", lambda split, shapes, preload=False: SyntheticDataset(
        split, size=3, image_size=48, shapes=[1]))
    monkeypatch.setattr(paper_job, "localizer_task", lambda cfg, data, state: seen.setdefault("data", data) and
                        Task("localizer", None, None, None, None, {}))
    task = paper_job.shape_task(("ellipse",))(None, SyntheticDataset("train", size=2), None)
    assert set(np.concatenate([r.labels for r in seen["data"].records]).tolist()) <= {1}
    assert task.extras["training_data"] == "synthetic:train (ellipse)"


def test_report_has_the_one_box_row_its_claims_and_the_cross_dataset_section(tmp_path):
    ilsvrc = {"det@5": 0.5, "class@5": 1.0, "det@1": 0.25, "class@1": 0.75}
    rate = {"1": 0.1, "5": 0.2, "10": 0.3, "25": 0.4, "100": 0.5}
    entry = {"AP": 0.6, "detection_rate": rate, "num_objects": 9, "precision": [1.0], "recall": [0.5]}
    results = {
        "plan": {"localizer_steps": 10, "classifier_steps": 20, "unseen_steps": 30, "one_box_steps": 40,
                 "cross_steps": 50, "unseen_class": "b", "cross_shapes": [["a"], ["b"]]},
        "scale": 0.25, "dataset": "synthetic:test", "num_images": 3,
        "training_seconds": {"localizer": 60.0, "classifier": 60.0, "unseen": 60.0, "one_box_per_class": 120.0,
                             "cross0": 30.0, "cross1": 30.0},
        "fig1": {"single": rate, "multiscale": rate, "priors": rate, "num_objects": 7},
        "table1": {"DeepMultiBox": {"a": 0.25, "b": 0.5, "mAP": 0.375}},
        "table2": {"One-box-per-class": ilsvrc, "DeepMultiBox, top 1 window": ilsvrc},
        "claims": {"one_object_per_class": {"images": 5, "det@5": {"One-box-per-class": 0.8}},
                   "several_of_a_class": {"images": 4, "objects": 10,
                                          "detection_rate": {"one box per class (all its boxes)": 0.4}}},
        "fig5": {"unseen": entry},
        "fig5_models": {"one box per class": entry},
        "cross_dataset": {"trained on a: on b": entry},
        "cost": {"torch_threads": 2, "images": 3, "load_average": 1.5},
    }
    text = write_report(results, ["a", "b"], tmp_path).read_text()
    for fragment in ["| One-box-per-class | 50.0 % | 100.0 % | 25.0 % | 75.0 % |", "| 40 x 32 | 2.0 min |",
                     "| One-box-per-class | 80.0 % |", "| one box per class (all its boxes) | 40.0 % |",
                     "| one box per class | 9 | 0.600 | 30.0 % |", "| trained on a: on b | 9 | 0.600 | 30.0 % |",
                     "fig5_one_box_per_class_pr.png", "fig5_cross_dataset_pr.png", "On the 4 test images",
                     "`--scale 0.25`: every step count is 0.25 x"]:
        assert fragment in text, fragment
