"""Unseen classes (§4.4.2, Fig. 5): train without some classes, then measure detection of those alone.

The paper asks whether a class-agnostic localizer finds objects of classes it was never trained on
(an ImageNet-trained model applied to VOC and vice versa). On one dataset we hold classes out:

* **Training** (``--exclude-classes A,B``): every training image holding an object of A or B is
  **dropped**, so those objects are never positives. Keeping the image with those boxes deleted would
  make them negatives by omission -- the confidence loss would push predictions on them towards
  "no object" -- and bias the very test we want to run. The price is the other objects of those images.
* **Evaluation** (``--classes A,B``): ground truth of every other class is marked **ignore**, not
  removed: a detection of a seen-class object is then neither a true nor a false positive (VOC
  ``difficult`` handling in :mod:`multibox.evaluation.voc`), and such objects do not count in the
  detection rate. Removing them instead would turn correct detections of other objects into false
  positives and understate the precision of a class-agnostic detector.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import Tensor

from multibox.data.dataset import DetectionDataset
from multibox.data.subset import ImageSubset
from multibox.errors import UserError


def class_ids(class_names: list[str], names: list[str], flag: str) -> list[int]:
    """Indices of ``names`` in ``class_names``; an unknown name is a one-line UserError naming ``flag`` (the
    config key or parameter that gave them)."""
    unknown = [n for n in names if n not in class_names]
    if unknown:
        raise UserError(f"{flag}: unknown class {', '.join(map(repr, unknown))} (classes: {', '.join(class_names)})")
    return [class_names.index(n) for n in names]


class ClassSubset(ImageSubset):
    """The images of ``base`` holding no object (ignored ones included) of the ``excluded`` class ids.

    Records and pixels are the base dataset's; labels keep their indices (``class_names`` unchanged).
    """

    def __init__(self, base: DetectionDataset, excluded: list[int], names: list[str]) -> None:
        kept = [i for i, r in enumerate(base.records) if not np.isin(r.labels, excluded).any()]
        super().__init__(base, kept, f"{base.name} without {','.join(names)}")


def without_classes(dataset: DetectionDataset, names: list[str]) -> DetectionDataset:
    """``dataset`` minus the images holding any of the classes ``names`` (``dataset`` itself if none)."""
    if not names:
        return dataset
    subset = ClassSubset(dataset, class_ids(list(dataset.class_names), names, "data.exclude_classes"), names)
    print(f"{dataset.name}: excluding {', '.join(names)}: {len(dataset) - len(subset)} of {len(dataset)} "
          f"training images dropped", file=sys.stderr)
    if len(subset) == 0:
        raise UserError(f"data.exclude_classes {','.join(names)}: every training image holds one of them")
    return subset


def only_classes(targets: list[dict[str, Tensor]], ids: list[int]) -> list[dict[str, Tensor]]:
    """Per-image targets with every object not of class ``ids`` marked ignore (see the module docstring).

    targets: dicts {"boxes": Tensor[M, 4], "labels": Tensor[M], "ignore": Tensor[M]}; returns new dicts.
    """
    keep = torch.tensor(ids, dtype=torch.int64)
    return [t | {"ignore": t["ignore"] | ~torch.isin(t["labels"], keep)} for t in targets]
