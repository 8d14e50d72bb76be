"""One training step at the paper's scale (batch 128, K = 200): the share of matching + loss, and
whether the data pipeline outruns the model.

The run is built by the training code itself (setup_run / make_loader / train_step) on the
synthetic data: mobilenet_v3_large at 220 px (the localizer bench/gpu_check.py trains on a GPU),
Adagrad, prior matching, data.num_workers DataLoader workers.

* step: the fastest of a few train_step calls (host-to-device copy, forward, loss, backward,
  gradient clipping, optimizer step) on one loaded batch;
* matching + loss: with prior matching the assignment is computed per sample in the data workers
  (timed separately below) and the step only evaluates the loss: its forward and backward, timed on
  the step's outputs as leaf tensors so that the network's backward is not counted;
* the §3 ablation (--no-prior-matching) matches predictions inside the step: match_predictions on
  the same batch is timed and reported against the step too;
* data pipeline: images/s of the DataLoader alone (the same workers, prior matching included)
  against the images/s the step consumes; target >= 2x.

    PYTHONPATH=src python bench/train_step.py [--threads N]
"""

from __future__ import annotations

import itertools
import tempfile
import time

import torch

from measure import Result, fastest
from measure import main as bench_main
from multibox.engine.trainer import Run, loader_workers, make_loader, setup_run, train_step
from multibox.config import Config
from multibox.modeling.losses import weighted_total
from multibox.modeling.matcher import match_predictions, match_priors

BATCH, K, SIZE = 128, 200, 220


def config() -> Config:
    cfg = Config.preset("paper")
    cfg.model.backbone, cfg.model.image_size, cfg.model.num_boxes = "mobilenet_v3_large", SIZE, K
    cfg.data.synthetic_sizes = {"train": 1024, "val": 8, "test": 8}
    cfg.train.batch_size, cfg.train.device, cfg.train.steps = BATCH, "cpu", 1
    return cfg


def loss_seconds(run: Run, images: torch.Tensor, targets: dict) -> float:
    """Forward + backward of the loss alone, on the network's outputs as leaves."""
    with torch.no_grad():
        outputs = run.model(images)
    leaves = {k: v.detach().requires_grad_() for k, v in outputs.items()}

    def loss_step() -> None:
        terms = run.task.loss(leaves, targets)
        weighted_total(terms, run.task.loss.weights()).backward()

    return fastest(loss_step, repeats=5)


def pipeline_images_per_s(run: Run, dataset) -> float:
    """The DataLoader alone. W workers deliver batches in bursts of W (each makes one batch at a time),
    so the rate is timed from the end of the first burst (worker start-up is not throughput) over the
    next two."""
    workers = max(1, loader_workers(run))
    loader = iter(make_loader(run, dataset))
    for _ in range(workers):
        next(loader)
    start = time.perf_counter()
    for _ in itertools.islice(loader, 2 * workers):
        pass
    return 2 * workers * BATCH / (time.perf_counter() - start)


def worker_matching_seconds(run: Run, targets: dict) -> float:
    """CPU time the workers spend on prior matching for one batch (per-sample scipy assignment)."""
    gts = [b[:n] for b, n in zip(targets["boxes"], targets["count"].tolist())]
    return fastest(lambda: [match_priors(run.model.priors, gt) for gt in gts], repeats=3)


def run(threads: int) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        run_, dataset = setup_run(config(), f"{tmp}/run", resume=False)
        pipeline = pipeline_images_per_s(run_, dataset)
        images, targets, _ = next(iter(make_loader(run_, dataset)))
    step = fastest(lambda: train_step(run_, images, targets), repeats=2)
    loss = loss_seconds(run_, images, targets)
    with torch.no_grad():
        out = run_.model(images)
    ablation = fastest(lambda: match_predictions(out["pred_boxes"], out["pred_logits"], targets["boxes"],
                                                 targets["count"], 0.3), repeats=3)
    workers = worker_matching_seconds(run_, targets)
    print(f"  step {step * 1e3:.0f} ms, loss fwd+bwd {loss * 1e3:.2f} ms, prediction matching {ablation * 1e3:.1f} ms, "
          f"prior matching in workers {workers * 1e3:.1f} ms CPU/batch, pipeline {pipeline:.0f} images/s", flush=True)
    name = f"train step B={BATCH} K={K} mobilenet_v3_large {SIZE}px"
    return [
        Result(f"{name}: matching + loss (prior matching) / step", loss * 1e3, step * 1e3, "ms", 0.05,
               lower_is_better=True, percent=True),
        Result(f"{name}: matching + loss (prediction matching, §3 ablation) / step", (loss + ablation) * 1e3,
               (step + ablation) * 1e3, "ms", lower_is_better=True, percent=True),
        Result(f"{name}: prior matching in the data workers, CPU time per batch / step", workers * 1e3,
               step * 1e3, "ms", lower_is_better=True, percent=True),
        Result(f"{name}: data pipeline ({run_.cfg.data.num_workers} workers) vs model consumption",
               pipeline, BATCH / step, "images/s", 2.0),
    ]


if __name__ == "__main__":
    bench_main(run, __doc__, ".2f", "{:.3g}")
