"""Datasets: the record interface, the embedded synthetic data, readers for real formats, the training pipeline."""

from __future__ import annotations

from multibox.data.build import build_dataset
from multibox.data.dataset import DetectionDataset, ImageRecord
from multibox.data.problems import BadImage, Problem, ProblemLog

__all__ = ["BadImage", "DetectionDataset", "ImageRecord", "Problem", "ProblemLog", "build_dataset"]
