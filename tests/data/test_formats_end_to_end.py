"""The same images written as VOC, COCO and YOLO: identical training batches for a seed, and the CLI's
train -> evaluate works on each folder (issue: real datasets)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.datasets import SpecImage, write_coco, write_voc, write_yolo
from multibox.data.build import load_split
from multibox.engine.tasks import training_samples
from multibox.cli import main
from multibox.config import Config
from multibox.data.pipeline import EpochBatchSampler, collate


def spec(n: int = 12, seed: int = 0) -> list[SpecImage]:
    """n non-square images with 0-3 boxes of varied size."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        w, h = int(rng.integers(60, 120)), int(rng.integers(60, 120))
        boxes, labels = [], []
        for _ in range(int(rng.integers(0, 4))):
            x1, y1 = float(rng.integers(0, w - 20)), float(rng.integers(0, h - 20))
            boxes.append([x1, y1, float(rng.integers(x1 + 10, w + 1)), float(rng.integers(y1 + 10, h + 1))])
            labels.append(int(rng.integers(0, 3)))
        images.append(SpecImage(f"im{i:02d}", w, h, boxes, labels))
    return images


@pytest.fixture
def folders(tmp_path):
    data = spec()
    voc = write_voc(tmp_path / "voc", data, "train")
    coco = write_coco(tmp_path / "coco", data, "train")
    yolo = write_yolo(tmp_path / "yolo", data, "train")
    return {"voc": str(voc), "coco": str(coco), "yolo": str(yolo)}


def first_batch(data: str) -> tuple:
    cfg = Config.preset("paper")
    cfg.data.data, cfg.model.image_size = data, 64
    dataset = load_split(cfg, "train")
    order = np.argsort([Path(r.path).stem for r in dataset.records])
    priors = torch.rand(8, 4, generator=torch.Generator().manual_seed(0))  # the same priors for every format
    samples = training_samples(cfg, dataset, priors)
    keys = next(iter(EpochBatchSampler(len(dataset), 6, seed=3)))
    return collate([samples[k] for k in keys]), order


def test_same_data_in_three_formats_gives_identical_batches(folders):
    (images, targets, _), order = first_batch(folders["voc"])
    for fmt in ("coco", "yolo"):
        (other_images, other_targets, _), other_order = first_batch(folders[fmt])
        assert np.array_equal(order, other_order)  # same image order, so the same keys pick the same images
        assert torch.equal(images, other_images), fmt
        assert torch.allclose(targets["boxes"], other_targets["boxes"], atol=1e-4), fmt
        assert torch.equal(targets["prior_match"], other_targets["prior_match"]), fmt


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_train_then_evaluate_on_each_format(fmt, folders, tmp_path):
    run = tmp_path / f"run-{fmt}"
    common = ["--device", "cpu"]
    assert main(["train", "--data", folders[fmt], "--split", "train", "--out", str(run), "--steps", "2",
                 "--backbone", "tiny", "--image-size", "64", "--num-boxes", "8", "--batch-size", "4",
                 "--workers", "0", *common]) == 0
    assert main(["evaluate", "--model", str(run / "best.pt"), "--data", folders[fmt], "--split", "train",
                 "--out", str(tmp_path / f"eval-{fmt}"), *common]) == 0
    metrics = json.loads((tmp_path / f"eval-{fmt}" / "metrics.json").read_text())
    assert metrics["num_images"] == 12 and metrics["num_objects"] == sum(len(s.boxes) for s in spec())
    assert 0.0 <= metrics["detection_rate"]["5"] <= 1.0
