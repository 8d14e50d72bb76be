"""The one loop that runs a predictor over every image of a dataset.

A predictor (:class:`multibox.inference.localizer.Localizer`, :class:`multibox.inference.detector.Detector`)
says what the data workers prepare per image (``samples``), how items are batched (``collate``) and
how a batch becomes detections (``predict_samples``); this loop does the rest, the same for all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from multibox.data import DetectionDataset


class Predictor(Protocol):
    windows_per_image: int  # network inputs per image, so a batch holds about batch_size of them
    collate: Callable[[list], Any]

    def samples(self, dataset: DetectionDataset) -> Dataset: ...

    def predict_samples(self, batch: Any) -> list[dict[str, Tensor] | None]: ...


def predict_dataset(predictor: Predictor, dataset: DetectionDataset, batch_size: int = 32,
                    num_workers: int = 2, progress: str | None = None) -> list[dict[str, Tensor] | None]:
    """Per image of ``dataset``, the predictor's detections ({"boxes": Tensor[N, 4] pixel xyxy,
    "scores": Tensor[N] sorted, ...}); None for an image that could not be read. ``progress``: the
    label of a progress bar on stderr (images done, ETA); None for none (e.g. validation inside training)."""
    per_batch = max(1, batch_size // max(1, predictor.windows_per_image))
    loader = DataLoader(predictor.samples(dataset), batch_size=per_batch, num_workers=num_workers,
                        collate_fn=predictor.collate)
    detections: list[dict[str, Tensor] | None] = []
    with tqdm(total=len(dataset), desc=progress, unit="img", disable=progress is None, dynamic_ncols=True) as bar:
        for batch in loader:
            found = predictor.predict_samples(batch)
            detections += found
            bar.update(len(found))
    return detections
