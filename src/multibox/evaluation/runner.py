"""Running a localizer (or the priors-only baseline) over a dataset split and scoring it.

Detections are computed on the maximal center square crop (§4.2.2), mapped back to image pixels and
compared with the records' pixel boxes, so the numbers are in the frame users annotate in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from multibox.boxes import center_square_crop, clip_boxes, crop_to_image
from multibox.data import DetectionDataset
from multibox.data.pipeline import CenterCropSamples
from multibox.evaluation.detection_rate import DetectionRate
from multibox.evaluation.plots import plot_detection_rate
from multibox.model import MultiBox
from multibox.postprocess import postprocess, select


def dataset_targets(dataset: DetectionDataset) -> list[dict[str, Tensor]]:
    """Per-image ground truth: {"boxes": Tensor[M, 4] pixel xyxy, "labels": Tensor[M], "ignore": Tensor[M]}."""
    return [{"boxes": torch.from_numpy(r.boxes), "labels": torch.from_numpy(r.labels),
             "ignore": torch.from_numpy(r.ignore)} for r in dataset.records]


@torch.no_grad()
def predict_dataset(model: MultiBox, dataset: DetectionDataset, image_size: int, device: torch.device,
                    batch_size: int = 32, num_workers: int = 2, nms_iou: float = 0.5,
                    multiscale: bool = False) -> list[dict[str, Tensor]]:
    """The localizer's detections for every image of ``dataset`` (pixel xyxy, sorted by score, after NMS);
    None for an image that could not be read (see :func:`drop_unreadable`). ``multiscale``: the §4.3
    center square plus 3 x 3 windows (:mod:`multibox.multiscale`) instead of the center square alone."""
    if multiscale:
        from multibox.multiscale import predict_dataset_multiscale

        return predict_dataset_multiscale(model, dataset, image_size, device, batch_size, num_workers, nms_iou)
    model.eval().to(device)
    loader = DataLoader(CenterCropSamples(dataset, image_size), batch_size=batch_size, num_workers=num_workers)
    detections = []
    for images, crops, sizes, ok in loader:
        outputs = model(images.to(device))
        dets = postprocess(outputs, crops.to(device), sizes.to(device), nms_iou)
        detections += [{k: v.cpu() for k, v in d.items()} if good else None for d, good in zip(dets, ok.tolist())]
    return detections


def drop_unreadable(dataset: DetectionDataset, detections: list, *per_image: list) -> tuple[int, list, ...]:
    """Leave images that could not be read (detections None) out of ``detections`` and of every other
    per-image list, and say how many on stderr. Returns (skipped, detections, *per_image)."""
    keep = [i for i, d in enumerate(detections) if d is not None]
    skipped = len(detections) - len(keep)
    if skipped:
        print(f"{dataset.name}: {skipped} unreadable image(s) left out of the evaluation", file=sys.stderr)
    return (skipped, *([items[i] for i in keep] for items in (detections, *per_image)))


def prior_detections(priors: Tensor, match_counts: Tensor, dataset: DetectionDataset,
                     nms_iou: float = 0.5) -> list[dict[str, Tensor]]:
    """The priors-only baseline: the K priors themselves as boxes on each image's center crop, scored
    by how often prior matching picked them in training, with the same NMS as the model."""
    sizes = torch.tensor([[r.width, r.height] for r in dataset.records], dtype=torch.float32)  # [B, 2]
    crops = center_square_crop(sizes[:, 0], sizes[:, 1])  # [B, 4]
    boxes = crop_to_image(priors.float().expand(len(sizes), -1, -1), crops)  # [B, K, 4]
    boxes = clip_boxes(boxes, sizes[:, 0, None], sizes[:, 1, None])
    scores = (match_counts.float() / max(float(match_counts.sum()), 1.0)).expand(len(sizes), -1)  # [B, K]
    # Ties (priors never matched) keep k-means order; a tiny rank offset makes NMS order deterministic.
    scores = scores - torch.arange(priors.shape[0]) * 1e-9
    return select(boxes, scores, nms_iou, None)


def detection_rate(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], max_k: int) -> dict:
    metric = DetectionRate(max_k)
    metric.update(detections, targets)
    return metric.compute()


def write_report(metrics: dict, out_dir: str | Path) -> None:
    """metrics.json (curves left out of the top level for readability) and detection_rate.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    curves = {"DeepMultiBox": metrics["curve"]} | {
        f"{name} baseline": b["curve"] for name, b in metrics.get("baselines", {}).items()}
    plot_detection_rate(curves, out / "detection_rate.png")
