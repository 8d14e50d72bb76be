"""`multibox demo`: train a localizer on the embedded synthetic data, evaluate it on the test split,
draw a few detections -- the first thing a new user runs (`make demo`)."""

from __future__ import annotations

from pathlib import Path

from multibox.config import Config
from multibox.data.build import load_split
from multibox.engine.precision import resolve_device
from multibox.engine.trainer import train
from multibox.inference.localizer import Localizer
from multibox.jobs.evaluate import evaluate
from multibox.reports.plots import draw_boxes

DEMO_STEPS = 1200  # ~38k samples: about 7 minutes on two CPU cores


def demo_config(steps: int | None = DEMO_STEPS, minutes: float | None = None) -> Config:
    """The CPU demo: a small CNN at 128 x 128 on the embedded data, for a fixed number of steps (so its
    numbers do not depend on the machine) or a wall-clock budget.

    The paper's setting (AlexNet, 220 x 220, batch 128) needs a GPU; this keeps its K = 100, alpha,
    Adagrad and prior matching and shrinks the network. The learning rate and the 8 x 8 feature grid
    come from `bench/sweep_demo.py` (test-split detection rate at 10 boxes after 1,200 steps).
    """
    cfg = Config()
    cfg.model.backbone, cfg.model.image_size, cfg.model.hidden_dim, cfg.model.grid = "tiny", 128, 512, 8
    cfg.train.steps, cfg.train.time_minutes = steps, minutes
    cfg.train.batch_size, cfg.train.lr, cfg.train.checkpoint_every = 32, 0.003, 400
    cfg.data.synthetic_preload = True
    return cfg


def demo(out_dir: str | Path = "runs/demo", steps: int | None = DEMO_STEPS, minutes: float | None = None,
         device: str = "auto", multiscale: bool = False) -> dict:
    """`multibox demo`: train on the embedded data, evaluate on its test split, draw a few detections
    (``multiscale``: with the §4.3 two-scale localizer)."""
    cfg = demo_config(steps, minutes)
    cfg.train.device = device
    out = Path(out_dir)
    model_path = train(cfg, out)
    metrics = evaluate(model_path, out, split="test", device=device, multiscale=multiscale)
    draw_examples(model_path, cfg, out / "examples", device, multiscale=multiscale)
    return metrics


def draw_examples(model_path: Path, cfg: Config, out: Path, device: str, n: int = 8, top_k: int = 10,
                  multiscale: bool = False) -> None:
    """Test images with the top-k boxes (red) and the ground truth (green)."""
    dataset = load_split(cfg, "test")
    localizer = Localizer.from_checkpoint(model_path, resolve_device(device), "multiscale" if multiscale else None)
    out.mkdir(parents=True, exist_ok=True)
    images = [dataset.load_image(i) for i in range(min(n, len(dataset)))]
    for i, (image, (boxes, scores)) in enumerate(zip(images, localizer.predict_batch(images, top_k))):
        draw_boxes(image, boxes, scores, gt_boxes=dataset.records[i].boxes).save(out / f"test_{i:02d}.png")
