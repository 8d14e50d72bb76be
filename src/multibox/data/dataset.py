"""The dataset interface every source fills: a list of annotated image records plus a way to load pixels.

Readers (synthetic, VOC, COCO, YOLO) all produce :class:`ImageRecord` with boxes in *pixel* xyxy of
the image as loaded (EXIF orientation applied); the training pipeline converts them to the library's
normalized-crop convention.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from multibox.data.problems import ProblemLog


@dataclass
class ImageRecord:
    """One annotated image.

    boxes: float32 [M, 4], pixel xyxy of the image (after EXIF orientation).
    labels: int64 [M], indices into the dataset's ``class_names``.
    ignore: bool [M], True for objects that are neither positives in training nor counted in
        evaluation (VOC ``difficult``, COCO ``iscrowd``, heavily occluded synthetic objects).
    """

    image_id: str  # unique within the dataset split
    path: str | None  # image file; None for generated images
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.ignore = np.asarray(self.ignore, dtype=bool).reshape(-1)
        if not (len(self.boxes) == len(self.labels) == len(self.ignore)):
            raise ValueError(f"{self.image_id}: boxes, labels and ignore differ in length")


class DetectionDataset(ABC):
    """A split of annotated images: ``records[i]`` describes image ``i``, ``load_image(i)`` gives its pixels."""

    #: Human-readable class names; ``ImageRecord.labels`` index into it.
    class_names: list[str]
    #: One record per image, in a fixed order.
    records: list[ImageRecord]
    #: Short description for logs and reports, e.g. "synthetic:train" or "voc:/data/VOC2012:trainval".
    name: str
    #: Where problems with the input are reported (readers of files have one; generated data needs none).
    problems: ProblemLog | None = None

    def __len__(self) -> int:
        return len(self.records)

    @abstractmethod
    def load_image(self, index: int, target_size: tuple[int, int] | None = None) -> Image.Image:
        """The RGB image of ``records[index]``, oriented as its boxes are.

        target_size: (width, height) the caller needs at least; a source may then decode a smaller
        image than ``records[index].width/height`` (scale boxes by ``image.width / record.width``).
        Raises :class:`multibox.data.problems.BadImage` for an unusable image.
        """

    def num_objects(self, include_ignored: bool = False) -> int:
        """How many objects the split holds (ignored objects excluded unless asked)."""
        if include_ignored:
            return sum(len(r.boxes) for r in self.records)
        return sum(int((~r.ignore).sum()) for r in self.records)
