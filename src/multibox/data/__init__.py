"""Datasets: the record interface, the embedded synthetic data, readers for real formats, the training pipeline."""

from __future__ import annotations

from multibox.data.dataset import DetectionDataset, ImageRecord
from multibox.errors import UserError

__all__ = ["DetectionDataset", "ImageRecord", "build_dataset"]


def build_dataset(spec: str, split: str = "train", **options) -> DetectionDataset:
    """The dataset named by ``spec`` (``--data``): ``synthetic`` or a path to a dataset (readers issue).

    ``options`` go to the dataset's constructor (e.g. the synthetic split sizes).
    """
    if spec == "synthetic":
        from multibox.data.synthetic import SyntheticDataset

        return SyntheticDataset(split=split, **options)
    raise UserError(f"--data {spec!r}: unknown dataset (expected 'synthetic')")
