"""Score calibration: the fit recovers a known miscalibration, leaves the ranking unchanged, and the
reliability numbers are what their definitions say."""

import numpy as np
import torch

from multibox.evaluation.calibration import calibration_metrics, expected_calibration_error, fit_platt, precision_at
from multibox.inference.localizer import Localizer
from multibox.modeling.localizer import build_grid_model


def test_platt_fit_recovers_a_known_temperature_and_bias():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    right = rng.random(len(z)) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))  # true P(right) = sigmoid(0.5 z - 1)
    scale, bias = fit_platt(1 / (1 + np.exp(-z)), right)
    assert abs(scale - 0.5) < 0.03 and abs(bias + 1.0) < 0.05
    assert fit_platt(np.array([0.2, 0.9]), np.array([True, True])) == (1.0, 0.0)  # nothing to fit


def test_ece_and_precision_follow_their_definitions():
    scores = np.array([0.05, 0.15, 0.85, 0.95, 0.95])
    right = np.array([False, True, True, True, False])
    # bins: [0, .1): 1 box, 0 right, mean .05; [.1, .2): 1 box, 1 right, .15; [.8, .9): 1, 1, .85; [.9, 1]: 2, 1, .95
    expected = (0.05 + 0.85 + 0.15 + 2 * 0.45) / 5
    assert abs(expected_calibration_error(scores, right) - expected) < 1e-12
    at = precision_at(scores, right, (0.5, 0.99))
    assert at["0.5"] == {"boxes": 3, "precision": 2 / 3} and at["0.99"] == {"boxes": 0, "precision": None}


def test_duplicates_are_wrong_and_the_metrics_count_the_top_boxes():
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0]), "ignore": torch.tensor([False])}
    det = {"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]]), "scores": torch.tensor([0.95, 0.85, 0.1])}
    cal = calibration_metrics([det], [target], max_det=2)
    assert cal["precision_at"]["0.5"] == {"boxes": 2, "precision": 0.5}  # the second box is a duplicate
    assert abs(cal["ece"] - (abs(0.85 - 0) + abs(0.95 - 1)) / 2) < 1e-6


def test_calibration_keeps_the_ranking_of_boxes():
    torch.manual_seed(0)
    model = build_grid_model("tiny", torch.tensor([[8.0, 8.0], [20.0, 14.0]]), image_size=64)
    torch.nn.init.normal_(model.head.conf.weight, std=0.5)
    torch.nn.init.normal_(model.head.loc.weight, std=0.05)
    image = torch.rand(3, 64, 64)
    before = Localizer(model, 64).predict(image, top_k=20)
    model.calibration.set(0.3, -2.0)
    after = Localizer(model, 64).predict(image, top_k=20)
    assert torch.equal(before[0], after[0])  # the same boxes in the same order
    assert not torch.allclose(before[1], after[1])
    z = torch.logit(before[1].double())
    assert torch.allclose(after[1].double(), torch.sigmoid(0.3 * z - 2.0), atol=1e-5)
