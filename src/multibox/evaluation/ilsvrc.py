"""ILSVRC-2012 classification-with-localization: det@5 and class@5 (the paper's Table 2).

Each image gets up to ``top_k`` (label, box) guesses: its ``top_k`` highest-scoring predictions
(a stable sort, so equal scores keep input order). The challenge allows one box per label; keeping
only the best box of each label is the caller's post-processing (the paper keeps "only the top
scoring score/location pair ... for a given class"), the metric scores whatever guesses it gets.

* class@k: the image counts as a hit if any guessed label is among its objects' labels.
* det@k: a hit if some guess has the label of an object *and* IoU >= 0.5 with that object
  (the official error min_j min_k max(d(label), f(box)) being 0).

Rates are over the images with at least one object; ``ignore`` objects are not objects here (an
image with only ignored objects is skipped). Errors, as the challenge reports them, are 1 - rate.
"""

from __future__ import annotations

import numpy as np

from multibox.evaluation.metric import DetectionMetric, FlatDetections
from multibox.evaluation.overlaps import overlapping_pairs, runs


def _top_guesses(flat: FlatDetections, top_k: int) -> np.ndarray:
    """int64 [n]: indices of each image's ``top_k`` best detections, grouped by image."""
    order = np.lexsort((-flat.det_scores, flat.det_image))  # stable: input order on equal scores
    starts, run = runs(flat.det_image[order])
    return order[np.arange(len(order)) - starts[run] < top_k]


def _hit_images(image: np.ndarray, hit: np.ndarray, num_images: int) -> np.ndarray:
    """bool [I]: images where any of the rows (``image`` [n], ``hit`` bool [n]) is a hit."""
    return np.bincount(image[hit], minlength=num_images) > 0


def localization_hits(flat: FlatDetections, top_k: int = 5, iou_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per image bool [I]: ``"evaluated"`` (has an object), ``"class"`` and ``"det"`` hits."""
    guess = _top_guesses(flat, top_k)
    objects = np.flatnonzero(~flat.gt_ignore)
    span = int(max(flat.det_labels.max(initial=0), flat.gt_labels.max(initial=0))) + 1
    # An (image, label) key per guess and per object: a class hit is a key they share.
    guess_key = flat.det_image[guess] * span + flat.det_labels[guess]
    object_key = flat.gt_image[objects] * span + flat.gt_labels[objects]
    order = np.argsort(object_key, kind="stable")
    objects, object_key = objects[order], object_key[order]
    class_hit = np.isin(guess_key, object_key)
    pairs = overlapping_pairs(flat.det_boxes[guess], guess_key, flat.gt_boxes[objects], object_key, iou_threshold)
    return {
        "evaluated": np.bincount(flat.gt_image[objects], minlength=flat.num_images) > 0,
        "class": _hit_images(flat.det_image[guess], class_hit, flat.num_images),
        "det": _hit_images(flat.det_image[guess][pairs.det], np.ones(len(pairs.det), bool), flat.num_images),
    }


class ILSVRCMetric(DetectionMetric):
    """det@k and class@k rates of (label, box) guesses; ``top_k`` = 5 is the challenge's setting.

    :meth:`compute` returns ``{"det@5": rate, "class@5": rate, "det@5_error": 1 - rate,
    "class@5_error": 1 - rate, "num_images": evaluated images}`` (rates NaN without images).
    """

    def __init__(self, top_k: int = 5, iou_threshold: float = 0.5) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k, self.iou_threshold = top_k, iou_threshold
        super().__init__()

    def compute(self) -> dict[str, float | int]:
        hits = localization_hits(self.flat(), self.top_k, self.iou_threshold)
        evaluated = hits["evaluated"]
        n = int(evaluated.sum())
        out: dict[str, float | int] = {}
        for kind in ("det", "class"):
            rate = float((hits[kind] & evaluated).sum() / n) if n else float("nan")
            out[f"{kind}@{self.top_k}"] = rate
            out[f"{kind}@{self.top_k}_error"] = 1.0 - rate
        out["num_images"] = n
        return out
