"""Proposal baselines: boxes inside the image, ranked by their documented rule, deterministic for a seed;
`multibox baseline` files; `evaluate --baselines all` (the one-command Fig. 1 report)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from fixtures.models import train_tiny
from PIL import Image

from multibox.data.build import load_split
from multibox.jobs.baseline import run_baseline
from multibox.jobs.evaluate import evaluate
from multibox.cli import main
from multibox.data.synthetic import SyntheticDataset
from multibox.errors import UserError
from multibox.evaluation.baselines import BaselineInputs, baseline_detections, random_boxes, resolve_baselines, selective_search_available, selective_search_boxes, sliding_windows
from multibox.evaluation.baselines import prior_detections


def inside(boxes, width: float, height: float) -> bool:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return bool(np.all((0 <= b[:, 0]) & (b[:, 0] < b[:, 2]) & (b[:, 2] <= width)
                       & (0 <= b[:, 1]) & (b[:, 1] < b[:, 3]) & (b[:, 3] <= height)))


def areas(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


@pytest.fixture(scope="module")
def images() -> SyntheticDataset:
    return SyntheticDataset(split="test", size=3, image_size=64, seed=0)


def test_sliding_windows_rank_large_square_central_first():
    boxes = sliding_windows(120, 80)
    assert inside(boxes, 120, 80) and len(np.unique(boxes, axis=0)) == len(boxes)
    # Scale 1 of the shorter side (80): two 80 x 80 squares touching the left and right edges (equally central).
    assert boxes[:2].tolist() == [[0, 0, 80, 80], [40, 0, 120, 80]]
    assert np.all(np.diff(areas(boxes)) <= 1e-3)  # each scale's shapes share an area (float32), larger scales first
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert min(w.min(), h.min()) >= 8 and {round(r, 4) for r in (w / h).tolist()} == {0.5, 1.0, 2.0}
    scale_2 = boxes[np.isclose(areas(boxes), 80 * 80 / 2) & np.isclose(w, h)]  # the 56.6 px squares
    centers = (scale_2[:, :2] + scale_2[:, 2:]) / 2 - [60, 40]
    assert np.all(np.diff((centers**2).sum(axis=1)) >= -1e-9)  # within a shape, central windows first


def test_random_boxes_are_inside_and_seeded(images):
    def run(seed: int, dataset=images):
        return baseline_detections("random", dataset, BaselineInputs(num_boxes=50, seed=seed))

    first, again, other = run(1), run(1), run(2)
    for det, record in zip(first, images.records):
        assert len(det["boxes"]) == 50 and inside(det["boxes"], record.width, record.height)
        assert torch.all(det["scores"][:-1] > det["scores"][1:])  # ranked in draw order
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(first, again))
    assert not any(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(first, other))
    shorter = run(1, SyntheticDataset(split="test", size=1, image_size=64, seed=0))  # image 0 only
    assert torch.equal(shorter[0]["boxes"], first[0]["boxes"])
    uniform = random_boxes(100, 100, 4000, np.random.default_rng(0))
    assert abs(uniform[:, 0].mean() - 100 / 3) < 2 and abs(uniform[:, 2].mean() - 200 / 3) < 2  # min / max of 2 uniforms


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """(checkpoint, config) of a 2-step tiny model (K = 16)."""
    return train_tiny(tmp_path_factory.mktemp("model") / "run")


def test_priors_baseline_is_the_checkpoints_priors(tiny_model, tmp_path, capsys):
    model, cfg = tiny_model
    metrics = run_baseline("priors", tmp_path / "priors", split="test", num_boxes=5, model_path=model)
    state = torch.load(model, weights_only=False)
    dataset = load_split(cfg, "test")
    expected = prior_detections(state["model"]["priors"], state["prior_match_counts"], dataset)
    entries = json.loads((tmp_path / "priors" / "detections.json").read_text())
    for entry, det in zip(entries, expected, strict=True):
        assert np.array_equal(np.array(entry["boxes"], np.float32), det["boxes"][:5].numpy())
        assert inside(entry["boxes"], entry["width"], entry["height"])
    evaluated = evaluate(model, tmp_path / "eval", split="test", device="cpu")
    assert set(metrics) >= set(evaluated) - {"model", "nms_iou"}  # same keys as evaluate but the model's own
    assert evaluated["nms_iou"] == cfg.model.nms_iou and "nms_iou" not in metrics
    assert metrics["max_boxes"] == 5 and metrics["curve"] == evaluated["baselines"]["priors"]["curve"][:5]
    assert metrics["detection_rate"] == {k: evaluated["baselines"]["priors"]["detection_rate"][k] for k in ("1", "5")}
    assert main(["baseline", "priors", "--out", str(tmp_path / "p2")]) == 2
    assert "needs a model" in capsys.readouterr().err


def test_baseline_cli_writes_detections_and_metrics(tmp_path, capsys):
    cfg = tmp_path / "data.yaml"
    cfg.write_text("data:\n  synthetic_sizes: {test: 3}\n  synthetic_image_size: 64\n")
    out = tmp_path / "sw"
    assert main(["baseline", "sliding-window", "--config", str(cfg), "--num-boxes", "7", "--out", str(out)]) == 0
    entries = json.loads((out / "detections.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(entries) == 3 and all(len(e["boxes"]) == len(e["scores"]) == 7 for e in entries)
    assert np.array_equal(np.array(entries[0]["boxes"], np.float32), sliding_windows(64, 64)[:7])
    assert metrics["method"] == "sliding-window baseline" and len(metrics["curve"]) == 7
    assert "sliding-window baseline" in capsys.readouterr().out and (out / "report.md").is_file()
    assert main(["baseline", "gaussian", "--out", str(out)]) == 2
    assert "unknown baseline 'gaussian'" in capsys.readouterr().err


def test_selective_search_boxes_inside_and_deterministic(images):
    if not selective_search_available():
        pytest.skip("OpenCV contrib (opencv-contrib-python-headless) is not installed")
    image = images.load_image(0).resize((120, 64))
    boxes = selective_search_boxes(image)
    assert len(boxes) > 3 and inside(boxes, 120, 64)
    assert np.array_equal(boxes, selective_search_boxes(image))  # OpenCV's unseeded order is not used
    assert np.all(np.diff(areas(boxes)) <= 0) and len(np.unique(boxes, axis=0)) == len(boxes)
    big = image.resize((240, 128))
    scaled = selective_search_boxes(big, max_side=120)  # searched at 120 x 64, mapped back
    assert np.allclose(scaled, selective_search_boxes(big.resize((120, 64), Image.BILINEAR)) * 2)


def test_selective_search_without_opencv_is_a_one_line_error(images, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    with pytest.raises(UserError, match="opencv-contrib-python-headless"):
        selective_search_boxes(Image.new("RGB", (20, 20)))
    assert resolve_baselines("all", have_model=False) == ["sliding-window", "random"]


def test_resolve_baselines():
    assert resolve_baselines("none", True) == [] and resolve_baselines("random,priors", True) == ["random", "priors"]
    with pytest.raises(UserError, match="unknown baseline 'edge-boxes'"):
        resolve_baselines("random,edge-boxes", True)


def test_evaluate_with_all_baselines_is_the_fig1_report(tiny_model, tmp_path, capsys):
    model, _ = tiny_model
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model), "--baselines", "all", "--num-boxes", "20", "--out", str(out),
                 "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    has_cv2 = "selective-search" in metrics["baselines"]
    expected = ["priors", "sliding-window", "random"] + (["selective-search"] if has_cv2 else [])
    assert list(metrics["baselines"]) == expected
    assert len(metrics["curve"]) == 16 and len(metrics["baselines"]["random"]["curve"]) == 20
    assert len(metrics["baselines"]["priors"]["curve"]) == 20  # at most K = 16 priors: the curve stays flat
    report = (out / "report.md").read_text()
    assert all(f"| {name} baseline |" in report for name in expected)
    printed = capsys.readouterr().out
    assert all(f"{name} baseline" in printed for name in expected) and "report.md" in printed
