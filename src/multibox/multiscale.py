"""The two-scale localizer of §4.3 (the second model of Fig. 1): center square plus a 3 x 3 grid.

"the max-center crop by a second scale where we select 3 x 3 windows of size 60% of the image
size". Our reading: each window is a **square of side 0.6 x min(W, H)**, the windows' corners spaced
evenly from the image's left/top edge to its right/bottom edge (offsets 0, (W - side) / 2, W - side
and likewise in y), so the nine squares cover a square image and overlap their neighbours. Squares,
not 0.6 W x 0.6 H rectangles, because the localizer is trained on undistorted square crops; on an
image more than 1.8 times wider than tall the grid leaves vertical gaps (the center square covers
part of them).

All 1 + 9 windows of all images run through the network as **one batch**; every window's boxes are
mapped to image pixels (:func:`multibox.boxes.crop_to_image`), truncated to the image (§4.1), pooled
per image (10 K boxes) and pruned together by one NMS (Jaccard 0.5) and top-k, so a box seen in two
windows survives once.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from multibox.boxes import center_square_crop, clip_boxes, crop_to_image, order_corners
from multibox.data import DetectionDataset
from multibox.data.pipeline import load_for_crop
from multibox.data.problems import BadImage
from multibox.model import MultiBox
from multibox.postprocess import ImageLike, Localizer, select
from multibox.preprocess import crop_resize, to_pil

WINDOW_FRACTION = 0.6  # §4.3: windows of 60 % of the image size
GRID = 3  # §4.3: 3 x 3 windows
NUM_WINDOWS = 1 + GRID * GRID


def multiscale_windows(width: float | Tensor, height: float | Tensor, fraction: float = WINDOW_FRACTION,
                       grid: int = GRID) -> Tensor:
    """Pixel xyxy windows Tensor[..., 1 + grid^2, 4]: the max center square, then the grid squares
    row by row (top-left first), float32. width/height: floats or Tensor[...].

    Computed in float64, so that e.g. 0.6 x 50 is exactly 30 (float32 would give 30.000002).
    """
    w, h = torch.as_tensor(width, dtype=torch.float64), torch.as_tensor(height, dtype=torch.float64)
    side = fraction * torch.minimum(w, h)  # [...]
    steps = torch.linspace(0, 1, grid, dtype=torch.float64)  # [g]
    x0 = ((w - side)[..., None] * steps)[..., None, :].expand(*w.shape, grid, grid)  # [..., g(row), g(col)]
    y0 = ((h - side)[..., None] * steps)[..., :, None].expand(*h.shape, grid, grid)
    s = side[..., None, None].expand_as(x0)
    squares = torch.stack([x0, y0, x0 + s, y0 + s], dim=-1).flatten(-3, -2)  # [..., g*g, 4]
    return torch.cat([center_square_crop(w, h)[..., None, :], squares.float()], dim=-2)


def merge_windows(outputs: dict[str, Tensor], windows: Tensor, image_sizes: Tensor, nms_iou: float | None = 0.5,
                  top_k: int | None = None) -> list[dict[str, Tensor]]:
    """Network outputs of B x W windows -> per-image detections in image pixels (one NMS per image).

    outputs: pred_boxes Tensor[B*W, K, 4] (xyxy in [0, 1] of each window), pred_logits Tensor[B*W, K],
    rows ordered image by image. windows: Tensor[B, W, 4] pixel xyxy; image_sizes: Tensor[B, 2] (w, h).
    Returns B dicts {"boxes": Tensor[N, 4], "scores": Tensor[N]} sorted by score.
    """
    b = windows.shape[0]
    pred = order_corners(outputs["pred_boxes"].float())  # as postprocess: x1 <= x2, y1 <= y2
    boxes = crop_to_image(pred, windows.reshape(-1, 4).to(pred))  # [B*W, K, 4]
    boxes = boxes.reshape(b, -1, 4)  # [B, W*K, 4]: every window's boxes in its image's frame
    sizes = image_sizes.to(boxes)
    boxes = clip_boxes(boxes, sizes[:, 0, None], sizes[:, 1, None])
    scores = outputs["pred_logits"].float().sigmoid().reshape(b, -1)  # [B, W*K]
    return select(boxes, scores, nms_iou, top_k)


def window_inputs(image, windows: Tensor, size: int) -> Tensor:
    """The W windows Tensor[W, 4] of a PIL image resized to the network input: Tensor[W, 3, S, S] uint8.

    crop_resize, as the localizer's training crops are made; a loop over the ten windows, not boxes.
    """
    return torch.stack([crop_resize(image, window, size) for window in windows])


class MultiScaleLocalizer(Localizer):
    """A :class:`multibox.postprocess.Localizer` that looks at the §4.3 ten windows of each image."""

    @torch.no_grad()
    def predict_batch(self, images: list[ImageLike], top_k: int | None = 10) -> list[tuple[Tensor, Tensor]]:
        """Detections for several images, all their windows in one forward pass:
        [(boxes Tensor[N, 4] pixel xyxy, scores Tensor[N])]."""
        pils = [to_pil(im) for im in images]
        sizes = torch.tensor([im.size for im in pils], dtype=torch.float32)  # [B, 2]
        windows = multiscale_windows(sizes[:, 0], sizes[:, 1])  # [B, W, 4]
        batch = torch.cat([window_inputs(im, w, self.image_size) for im, w in zip(pils, windows)])  # [B*W, 3, S, S]
        outputs = self.model(batch.to(self.device))
        dets = merge_windows(outputs, windows.to(self.device), sizes.to(self.device), self.nms_iou, top_k)
        return [(d["boxes"].cpu(), d["scores"].cpu()) for d in dets]


class MultiScaleSamples(Dataset):
    """Inference inputs for a dataset at both scales. Item i: (inputs Tensor[W, 3, S, S] uint8,
    windows Tensor[W, 4] pixel xyxy, size Tensor[2] (width, height), ok) -- blank with ok=False for
    an unreadable image, as :class:`multibox.data.pipeline.CenterCropSamples` does."""

    def __init__(self, dataset: DetectionDataset, image_size: int) -> None:
        self.dataset, self.image_size = dataset, image_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, bool]:
        record = self.dataset.records[index]
        size = torch.tensor([record.width, record.height], dtype=torch.float32)
        windows = multiscale_windows(size[0], size[1])  # [W, 4]
        try:  # decoded at the resolution the smallest window (a grid square) needs
            image, _ = load_for_crop(self.dataset, index, windows[1].numpy(), self.image_size)
        except BadImage:
            blank = torch.zeros(len(windows), 3, self.image_size, self.image_size, dtype=torch.uint8)
            return blank, windows, size, False
        scale = image.width / record.width  # a JPEG may be decoded smaller than the record's size
        return window_inputs(image, windows * scale, self.image_size), windows, size, True


@torch.no_grad()
def predict_dataset_multiscale(model: MultiBox, dataset: DetectionDataset, image_size: int, device: torch.device,
                               batch_size: int = 32, num_workers: int = 2,
                               nms_iou: float = 0.5) -> list[dict[str, Tensor] | None]:
    """:func:`multibox.evaluation.runner.predict_dataset` at both scales: per image {"boxes", "scores"}
    (pixel xyxy, sorted, after one NMS over the windows), None for an unreadable image."""
    model.eval().to(device)
    per_batch = max(1, batch_size // NUM_WINDOWS)  # images per forward pass, ~batch_size windows
    loader = DataLoader(MultiScaleSamples(dataset, image_size), batch_size=per_batch, num_workers=num_workers)
    detections: list[dict[str, Tensor] | None] = []
    for inputs, windows, sizes, ok in loader:
        outputs = model(inputs.flatten(0, 1).to(device))  # [B*W, 3, S, S]
        dets = merge_windows(outputs, windows.to(device), sizes.to(device), nms_iou)
        detections += [{k: v.cpu() for k, v in d.items()} if good else None for d, good in zip(dets, ok.tolist())]
    return detections
