"""`multibox paper`: the plan's scaling, the per-image cost timing and the Markdown report (no training)."""

import torch
from PIL import Image

from multibox.jobs.paper import Plan, time_detector
from multibox.reports.paper import write_report


def test_plan_scales_every_step_count_and_keeps_at_least_one():
    plan = Plan(localizer_steps=1000, classifier_steps=800, unseen_steps=1000).scaled(0.05)
    assert (plan.localizer_steps, plan.classifier_steps, plan.unseen_steps) == (50, 40, 50)
    assert Plan().scaled(1e-6).classifier_steps == 1 and Plan().scaled(1.0) == Plan()


class FakeDetector:
    """Localizer returning 3 boxes; score_boxes counted."""

    class localizer:  # noqa: N801
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
