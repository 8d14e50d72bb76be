"""What the data workers prepare for inference over a dataset, one item per image.

:class:`WindowSamples` decodes each image only as large as its smallest window needs (JPEG draft
mode) and cuts its windows (:mod:`multibox.inference.windows`) resized to S x S, so the main process
only runs the network. :class:`ImageSamples` hands over the whole decoded image (the detector crops
the classifier's regions from it). An unreadable image is reported by the reader and comes back
marked, so the evaluation can leave it out and say so.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from multibox.data import BadImage, DetectionDataset
from multibox.data.pipeline import load_for_crop
from multibox.inference.windows import image_windows, window_inputs


class WindowSamples(Dataset):
    """Item i: (inputs Tensor[W, 3, S, S] uint8, windows Tensor[W, 4] pixel xyxy, size Tensor[2]
    (width, height), ok) -- blank inputs with ok=False for an unreadable image."""

    def __init__(self, dataset: DetectionDataset, image_size: int, windows: str = "whole", tile: float | None = None,
                 overlap: float = 0.2) -> None:
        self.dataset, self.image_size, self.windows = dataset, image_size, windows
        self.tile, self.overlap = tile, overlap

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, bool]:
        record = self.dataset.records[index]
        size = torch.tensor([record.width, record.height], dtype=torch.float32)
        windows = image_windows(record.width, record.height, self.windows, self.tile, self.overlap)  # [W, 4]
        smallest = windows[int((windows[:, 2] - windows[:, 0]).argmin())]
        try:  # decoded at the resolution the smallest window needs
            image, _ = load_for_crop(self.dataset, index, smallest.numpy(), self.image_size)
        except BadImage:
            blank = torch.zeros(len(windows), 3, self.image_size, self.image_size, dtype=torch.uint8)
            return blank, windows, size, False
        scale = image.width / record.width  # a JPEG may be decoded smaller than the record's size
        return window_inputs(image, windows * scale, self.image_size), windows, size, True


class ImageSamples(Dataset):
    """Item i: the decoded image (PIL RGB), or None when it cannot be read."""

    def __init__(self, dataset: DetectionDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Image.Image | None:
        try:
            return self.dataset.load_image(index)
        except BadImage:
            return None


def collate_windows(items: list[tuple[Tensor, Tensor, Tensor, bool]]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """WindowSamples items -> (inputs Tensor[T, 3, S, S], windows Tensor[T, 4], counts Tensor[B] (windows per
    image), sizes Tensor[B, 2], ok Tensor[B]); T = sum of the images' window counts, which may differ (tiles)."""
    inputs, windows, sizes, ok = zip(*items)
    counts = torch.tensor([len(w) for w in windows], dtype=torch.int64)
    return torch.cat(inputs), torch.cat(windows), counts, torch.stack(sizes), torch.tensor(ok)
