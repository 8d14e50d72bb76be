"""Full detection (§4.2.2, §4.4.1): class-agnostic localizer boxes, each scored by the C+1-way classifier.

Per image: the localizer's boxes (center square, or the §4.3 two scales) -> NMS -> the top N boxes
(N = 10 by default, §4.2.2 "the top 10 highest scoring detections are kept") -> each box's square
region (:mod:`multibox.data.regions`: "max" for VOC, §4.2.2; "min" for ILSVRC, §4.4.1) -> all regions of
all images of the batch classified in one forward pass -> per box and class c < C,
``score = localizer confidence x classifier probability of c`` ("The final detection score is the
product of the localizer score for the given box multiplied by the score of the classifier").
Background (index C) is never reported. Two modes:

* ``"voc"``: NMS at Jaccard 0.5 (§4.2.2). :meth:`Detector.detect` reports each box once, with its best
  class (what a user wants to see); the dataset path (:func:`detect_dataset`, ``per_box=False``) makes
  every (box, class) pair a detection, N x C per image, so each class gets its own ranking for the
  per-class AP of Table 1.
* ``"ilsvrc"``: NMS at Jaccard 0.4 (§4.4.1) and "only the top scoring score/location pair is kept
  for a given class": at most C detections per image, the input of det@5 / class@5 (Table 2).

Shapes: N boxes per image, C classes, D detections per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from multibox.config import CLASSIFIER_REGIONS, DETECTOR_MODES
from multibox.data import DetectionDataset
from multibox.data.regions import crop_regions, image_tensor, square_regions
from multibox.data.transforms import to_pil
from multibox.engine.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
from multibox.errors import UserError
from multibox.inference.localizer import ImageLike, Localizer, image_list, one_image
from multibox.inference.postprocess import check_options, keep_best
from multibox.inference.predict import predict_dataset
from multibox.inference.samples import ImageSamples
from multibox.modeling.classifier import Classifier


@dataclass(frozen=True)
class Mode:
    """How boxes become detections: the localizer's NMS threshold and whether each class keeps one box."""

    nms_iou: float
    best_box_per_class: bool


MODES = dict(zip(DETECTOR_MODES, (Mode(0.5, False), Mode(0.4, True))))  # §4.2.2 and §4.4.1


def combine_scores(confidences: Tensor, probs: Tensor, best_box_per_class: bool = False,
                   best_label_per_box: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Detections of one image from its N boxes: (box index Tensor[D], label Tensor[D], score Tensor[D]),
    sorted by descending score.

    confidences: Tensor[N], the localizer's; probs: Tensor[N, C + 1], the classifier's softmax with
    background last. score = confidence x probability for each class c < C (§4.2.2); with
    ``best_box_per_class`` only each class's best box is kept (§4.4.1), with ``best_label_per_box``
    each box once with its best class (D = N), else all N x C pairs.
    """
    scores = confidences[:, None] * probs[:, :-1]  # [N, C]: background dropped
    n, c = scores.shape
    if best_box_per_class:
        flat, box = scores.max(dim=0) if n else (scores.new_zeros(0), torch.zeros(0, dtype=torch.int64))
        labels = torch.arange(len(flat))
    elif best_label_per_box:
        flat, labels = scores.max(dim=1)
        box = torch.arange(n)
    else:
        flat, box, labels = scores.flatten(), torch.arange(n).repeat_interleave(c), torch.arange(c).repeat(n)
    order = torch.argsort(flat, descending=True, stable=True)
    return box[order], labels[order], flat[order]


def _load_kind(path: str | Path, kind: str) -> tuple[torch.nn.Module, dict]:
    """(network, checkpoint dict) of the ``kind`` at ``path``; errors say "KIND PATH: what is wrong"."""
    try:
        state = load_checkpoint(path)
        return model_from_checkpoint(state, kind)[0], state
    except UserError as exc:
        raise UserError(f"{kind} {path}: {str(exc).removeprefix(f'{path}: ')}") from None


class Detector:
    """Localizer + classifier (module docstring). The mode sets the localizer's NMS threshold (0.5 for
    "voc", 0.4 for "ilsvrc"), so give each Detector its own Localizer.

    Images are taken in the forms :class:`multibox.inference.localizer.Localizer` takes (a path, PIL
    image, numpy [H, W, 3] uint8 or float in [0, 1], Tensor[3, H, W]; a Tensor[B, 3, H, W] batch only
    by :meth:`detect_batch`).

    >>> det = Detector.from_checkpoints("runs/loc/model.pt", "runs/cls/model.pt")
    >>> out = det.detect("photo.jpg", min_score=0.25)   # one detection per box, best class first
    >>> out["boxes"], out["scores"], out["labels"], out["label_scores"]   # Tensor[D, 4] pixels, Tensor[D] x 3
    >>> out["label_names"]   # list[str], the class of each id in out["labels"]
    """

    def __init__(self, localizer: Localizer, classifier: Classifier, class_names: list[str], classifier_size: int,
                 region: str = "max", top_n: int = 10, mode: str = "voc") -> None:
        if region not in CLASSIFIER_REGIONS:
            raise UserError(f"region {region!r}: expected one of {', '.join(CLASSIFIER_REGIONS)}")
        if mode not in MODES:
            raise UserError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if classifier.num_outputs != len(class_names) + 1:
            raise ValueError(f"classifier has {classifier.num_outputs} outputs for {len(class_names)} classes "
                             "+ background")
        self.localizer, self.classifier = localizer, classifier.eval().to(localizer.device)
        self.class_names, self.classifier_size, self.region = list(class_names), classifier_size, region
        self.top_n, self.mode = top_n, MODES[mode]
        self.localizer.nms_iou = self.mode.nms_iou

    @classmethod
    def from_checkpoints(cls, localizer: str | Path, classifier: str | Path, device: str | torch.device = "cpu",
                         top_n: int = 10, mode: str = "voc", region: str | None = None,
                         multiscale: bool = False, located: Localizer | None = None) -> Detector:
        """A detector from a localizer and a classifier checkpoint; ``region`` defaults to the square
        the classifier was trained on, ``multiscale`` uses the §4.3 two-scale localizer; a given
        ``located`` localizer (built from the same checkpoint, with its own windows) is used as it is."""
        loc_model, loc_state = _load_kind(localizer, "localizer")
        cls_model, cls_state = _load_kind(classifier, "classifier")
        loc_cfg, cls_cfg = (checkpoint_config(s) for s in (loc_state, cls_state))
        windows = "multiscale" if multiscale else loc_cfg.model.windows
        located = located or Localizer.for_config(loc_model, loc_cfg, device, windows, fuse=True)  # NMS: the mode's, below
        return cls(located, cls_model, cls_state["class_names"], cls_cfg.model.image_size,
                   region or cls_cfg.model.classifier_region, top_n, mode)

    @torch.no_grad()
    def classify(self, crops: Tensor) -> Tensor:
        """Classifier probabilities Tensor[N, C + 1] of crops Tensor[N, 3, S, S] uint8, in one pass."""
        if len(crops) == 0:
            return torch.zeros(0, self.classifier.num_outputs)
        return self.classifier(crops.to(self.localizer.device))["logits"].float().softmax(-1).cpu()

    def score_boxes(self, images: list[Image.Image], boxes: list[Tensor], confidences: list[Tensor],
                    per_box: bool = False) -> list[dict[str, Tensor]]:
        """Classify given boxes (per image Tensor[N_i, 4] pixels, confidences Tensor[N_i]) -> per image
        {"boxes": Tensor[D, 4], "scores": Tensor[D], "labels": Tensor[D], "label_scores": Tensor[D] (the
        classifier's probability of the label), "box_index": Tensor[D] (which of the N_i boxes)}; every
        crop of every image in one batch. ``per_box``: each box once with its best class ("voc" mode;
        "ilsvrc" always keeps each class's best box)."""
        regions = [square_regions(b, im.width, im.height, self.region) for im, b in zip(images, boxes)]
        crops = [crop_regions(image_tensor(im), r, self.classifier_size) for im, r in zip(images, regions)]  # per image
        probs = self.classify(torch.cat(crops)).split([len(b) for b in boxes])
        out = []
        for b, conf, p in zip(boxes, confidences, probs):  # per image
            box, labels, scores = combine_scores(conf.float(), p, self.mode.best_box_per_class, per_box)
            out.append({"boxes": b[box], "scores": scores, "labels": labels, "label_scores": p[box, labels],
                        "box_index": box})
        return out

    def detect_batch(self, images: list[ImageLike] | Tensor, min_score: float = 0.0, iou: float | None = None,
                     max_det: int | None = None, per_box: bool = True) -> list[dict[str, Tensor]]:
        """Detections of several images: per image {"boxes" Tensor[D, 4] xyxy pixels, "scores" Tensor[D]
        (confidence x probability, §4.2.2), "labels" Tensor[D] (indices into ``class_names``),
        "label_scores" Tensor[D], "box_index" Tensor[D]}, sorted by score.

        The localizer keeps its ``top_n`` best boxes per image after NMS at ``iou`` (default: the
        mode's); detections scoring under ``min_score`` are dropped and at most ``max_det`` kept per
        image. ``per_box=False`` ("voc" mode): every (box, class) pair instead of each box's best class.
        """
        check_options(min_score, iou, None, max_det)
        pils = [to_pil(im) for im in image_list(images)]
        if not pils:
            return []
        # a detection's score is at most its box's confidence: boxes under min_score cannot make one
        located = self.localizer.predict_batch(pils, self.top_n, min_score, iou)
        scored = self.score_boxes(pils, [b for b, _ in located], [s for _, s in located], per_box)
        return [keep_best(det, min_score, max_det) for det in scored]

    def detect(self, image: ImageLike, min_score: float = 0.0, iou: float | None = None,
               max_det: int | None = None) -> dict[str, Tensor | list[str]]:
        """Detections of one image, each box once with its best class: :meth:`detect_batch`'s dict and
        "label_names", list[str] of D class names beside the ids in "labels" (detections.json's "labels"
        and "label_ids")."""
        det = self.detect_batch([one_image(image, "detect")], min_score, iou, max_det)[0]
        return det | {"label_names": [self.class_names[i] for i in det["labels"].tolist()]}

    # --- over a dataset (:func:`multibox.inference.predict.predict_dataset`) -------------------------

    windows_per_image = 1
    collate = staticmethod(list)

    def samples(self, dataset: DetectionDataset) -> ImageSamples:
        return ImageSamples(dataset)

    def predict_samples(self, images: list[Image.Image | None]) -> list[dict[str, Tensor] | None]:
        """Detections of a batch of decoded images (every (box, class) pair in "voc" mode, for per-class
        rankings); None stays None (an unreadable image)."""
        found = iter(self.detect_batch([im for im in images if im is not None], per_box=False))
        return [None if im is None else next(found) for im in images]


def detect_dataset(detector: Detector, dataset: DetectionDataset,
                   batch_size: int = 16) -> list[dict[str, Tensor] | None]:
    """:meth:`Detector.detect_batch` over every image of ``dataset``; None for unreadable images."""
    return predict_dataset(detector, dataset, batch_size, num_workers=0)
