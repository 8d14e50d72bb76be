"""The shared shape of every evaluation metric: ``update`` per batch, ``compute`` once, ``reset``.

Metrics take per-image lists of dicts (the torchvision detection convention) and keep them as-is
until :meth:`DetectionMetric.compute`, which concatenates everything into flat arrays
(:class:`FlatDetections`) so the metric itself can work on all images at once, without Python loops
over boxes or images.

Per image::

    prediction = {"boxes": [N, 4] pixel xyxy, "scores": [N], "labels": [N] int64 (optional)}
    target     = {"boxes": [M, 4] pixel xyxy, "labels": [M] int64, "ignore": [M] bool (optional)}

Tensors or numpy arrays are both accepted. ``ignore`` marks VOC ``difficult`` / COCO ``iscrowd``
objects; each metric documents what it does with them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


@dataclass
class FlatDetections:
    """All images' predictions and targets, concatenated; images numbered in ``update`` order.

    Detections (N): ``det_boxes`` float64 [N, 4] pixel xyxy, ``det_scores`` float64 [N],
    ``det_labels`` int64 [N] (zeros when the predictions carried no labels), ``det_image`` int64 [N].
    Ground truths (M): ``gt_boxes`` float64 [M, 4], ``gt_labels`` int64 [M], ``gt_ignore`` bool [M],
    ``gt_image`` int64 [M]. Within an image, boxes keep their input order.
    """

    num_images: int
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_labels: np.ndarray
    det_image: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_ignore: np.ndarray
    gt_image: np.ndarray


def _tensor(value: ArrayLike) -> Tensor:
    """``value`` as a CPU tensor, dtype untouched (it is converted once, after concatenation)."""
    if not isinstance(value, Tensor):
        return torch.as_tensor(value)
    if value.requires_grad:
        value = value.detach()
    return value if value.device.type == "cpu" else value.cpu()


def _boxes(value: ArrayLike, what: str) -> Tensor:
    """Boxes as Tensor[K, 4]; an empty input of any shape becomes [0, 4]."""
    boxes = _tensor(value)
    if boxes.ndim == 2 and boxes.shape[1] == 4:
        return boxes
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    raise ValueError(f"{what} boxes must have shape [K, 4], got {tuple(boxes.shape)}")


def _column(value: ArrayLike | None, n: int, what: str, fill_dtype: torch.dtype) -> Tensor:
    """A per-box vector of length n (zeros of ``fill_dtype`` when absent)."""
    if value is None:
        return torch.zeros(n, dtype=fill_dtype)
    value = _tensor(value)
    if value.ndim != 1:
        value = value.reshape(-1)
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} entries for {n} boxes")
    return value


def _prediction(pred: Mapping[str, Any], need_labels: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(boxes [N, 4], scores [N], labels [N]) of one image's prediction dict."""
    boxes = _boxes(pred["boxes"], "prediction")
    if need_labels and pred.get("labels") is None:
        raise ValueError("this metric is class-aware: predictions need 'labels'")
    scores = _column(pred["scores"], len(boxes), "prediction 'scores'", torch.float64)
    return boxes, scores, _column(pred.get("labels"), len(boxes), "prediction 'labels'", torch.int64)


def _target(target: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
    """(boxes [M, 4], labels [M], ignore [M]) of one image's target dict."""
    boxes = _boxes(target["boxes"], "target")
    labels = _column(target["labels"], len(boxes), "target 'labels'", torch.int64)
    return boxes, labels, _column(target.get("ignore"), len(boxes), "target 'ignore'", torch.bool)


def _cat(parts: tuple[Tensor, ...], empty_shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray:
    """Concatenate per-image tensors (mixed dtypes allowed) into one numpy array of ``dtype``."""
    if not parts:
        return torch.zeros(empty_shape, dtype=dtype).numpy()
    return torch.cat(parts).to(dtype).numpy()  # torch.cat promotes mixed dtypes


def _image_index(counts: list[int]) -> np.ndarray:
    """int64 [sum(counts)]: the image each concatenated row came from."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def class_indices(labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into ``classes`` [n], whether the label is one of them bool [n]) of int labels [n].

    ``classes`` int64 [K] must be sorted; unknown labels get an arbitrary index and False.
    """
    index = np.searchsorted(classes, labels)
    known = index < len(classes)
    known[known] = classes[index[known]] == labels[known]
    return index, known


class DetectionMetric(ABC):
    """Accumulates per-image predictions and targets; subclasses implement :meth:`compute`.

    ``needs_labels``: whether predictions must carry ``labels`` (class-aware metrics).
    """

    needs_labels: bool = True

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._preds: list[tuple[Tensor, Tensor, Tensor]] = []
        self._targets: list[tuple[Tensor, Tensor, Tensor]] = []

    def update(self, predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
        """Add a batch of images: one prediction dict and one target dict per image.

        Arrays are kept by reference until :meth:`compute` (no copy per batch): do not modify them
        in place afterwards. A malformed batch raises ValueError and adds nothing.
        """
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
        preds = [_prediction(p, self.needs_labels) for p in predictions]
        targets_ = [_target(t) for t in targets]
        self._preds += preds
        self._targets += targets_

    @property
    def num_images(self) -> int:
        return len(self._targets)

    def flat(self) -> FlatDetections:
        """Everything seen so far as flat arrays (see :class:`FlatDetections`)."""
        det_boxes, det_scores, det_labels = zip(*self._preds) if self._preds else ((), (), ())
        gt_boxes, gt_labels, gt_ignore = zip(*self._targets) if self._targets else ((), (), ())
        return FlatDetections(
            num_images=self.num_images,
            det_boxes=_cat(det_boxes, (0, 4), torch.float64),
            det_scores=_cat(det_scores, (0,), torch.float64),
            det_labels=_cat(det_labels, (0,), torch.int64),
            det_image=_image_index([len(b) for b in det_boxes]),
            gt_boxes=_cat(gt_boxes, (0, 4), torch.float64),
            gt_labels=_cat(gt_labels, (0,), torch.int64),
            gt_ignore=_cat(gt_ignore, (0,), torch.bool),
            gt_image=_image_index([len(b) for b in gt_boxes]),
        )

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """The metric over every image seen since the last :meth:`reset`, as plain Python values."""
