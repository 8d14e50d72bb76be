"""A dataset of some of another dataset's images (records and pixels are the base's), and the
validation images held out of a training split that has no val split beside it (§4.4.1 selected its
hyper-parameters on held-out training images)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from multibox.data.dataset import DetectionDataset


class ImageSubset(DetectionDataset):
    """The images ``indices`` of ``base``, in that order; labels keep their indices."""

    def __init__(self, base: DetectionDataset, indices: list[int], name: str) -> None:
        self.base, self.class_names, self.problems = base, base.class_names, base.problems
        self.kept = list(indices)
        self.records = [base.records[i] for i in self.kept]
        self.name = name

    def load_image(self, index: int, target_size: tuple[int, int] | None = None) -> Image.Image:
        return self.base.load_image(self.kept[index], target_size)


def holdout_indices(num_images: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the floor(fraction x num_images) images held out (seeded, so every run agrees)."""
    count = int(num_images * fraction)
    return np.sort(np.random.default_rng([seed, 7]).permutation(num_images)[:count])


def split_holdout(dataset: DetectionDataset, fraction: float, seed: int) -> tuple[DetectionDataset, DetectionDataset]:
    """(the training images, the held-out ones) of ``dataset``."""
    held = holdout_indices(len(dataset), fraction, seed)
    rest = np.setdiff1d(np.arange(len(dataset)), held)
    return (ImageSubset(dataset, rest.tolist(), f"{dataset.name} (training part)"),
            ImageSubset(dataset, held.tolist(), f"{dataset.name} (held out for validation)"))
