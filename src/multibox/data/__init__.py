"""Datasets: the record interface, the embedded synthetic data, readers for real formats, the training pipeline."""

from __future__ import annotations

from multibox.data.dataset import DetectionDataset, ImageRecord
from multibox.data.problems import BadImage, Problem, ProblemLog

__all__ = ["BadImage", "DetectionDataset", "ImageRecord", "Problem", "ProblemLog", "build_dataset"]


def build_dataset(spec: str, split: str = "train", **options) -> DetectionDataset:
    """The dataset named by ``spec`` (``--data``): ``synthetic``, or a dataset YAML, COCO JSON or dataset
    folder (VOC, COCO, YOLO; see :mod:`multibox.data.detect`).

    ``options`` go to the dataset's constructor (e.g. the synthetic split sizes; for files: names, cache,
    cache_dir, probe_images, max_pixels, problems -- see :class:`multibox.data.file_dataset.FileDataset`).
    Raises :class:`~multibox.errors.UserError` for a missing root, split or unrecognised format.
    """
    if spec == "synthetic":
        from multibox.data.synthetic import SyntheticDataset

        return SyntheticDataset(split=split, **options)
    from multibox.data.detect import open_dataset

    return open_dataset(spec, split, **options)
