"""The one-box-per-class network (§4.4.2's competitor) for inference: its C boxes, labelled or pruned.

Its outputs follow the localizer's contract (:mod:`multibox.modeling.one_box_per_class`), so the
localizer's windows, mapping to pixels and truncation serve it unchanged. Two uses:

* ``nms_iou=None``: every class's box with its label and probability, best first -- the (label, box)
  guesses of ILSVRC's det@5 (Table 2: the top 5 classes, one box each).
* ``nms_iou`` a float: class-agnostic detections, the C boxes pruned by NMS with the criterion
  DeepMultiBox uses (footnote 3: "non-max-suppression is performed on the 1000 boxes using the same
  criterion"), scored by their class probability -- Fig. 5's precision-recall.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from multibox.boxes import clip_boxes, crop_to_image, order_corners
from multibox.config import Config
from multibox.engine.checkpoint import checkpoint_config, checkpoint_kind, load_checkpoint
from multibox.errors import UserError
from multibox.inference.localizer import Localizer
from multibox.modeling.one_box_per_class import OneBoxPerClass, build_one_box_per_class

KIND = "one-box-per-class"  # the checkpoint's "task"


def load_one_box_per_class(path: str | Path) -> tuple[OneBoxPerClass, Config, dict]:
    """(network, config, checkpoint dict) of a one-box-per-class checkpoint; another kind is a UserError."""
    state = load_checkpoint(path)
    if checkpoint_kind(state) != KIND:
        raise UserError(f"{path}: holds a {checkpoint_kind(state)} checkpoint, not a {KIND} network")
    cfg = checkpoint_config(state)
    m = cfg.model
    weights = "none" if m.backbone.startswith("efficientnet_lite") else None  # the checkpoint's weights overwrite them
    model = build_one_box_per_class(m.backbone, state["model"]["priors"], weights, m.hidden_dim, m.grid)
    model.load_state_dict(state["model"])
    return model, cfg, state


class OneBoxPerClassPredictor(Localizer):
    """:class:`Localizer` over a :class:`OneBoxPerClass` network (see the module docstring for ``nms_iou``).

    Per-class guesses (``nms_iou=None``) need one window per image ("whole" or "center").
    """

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", windows: str | None = None,
                        nms_iou: float | None = None) -> OneBoxPerClassPredictor:
        """The checkpoint's network, looking at ``windows`` (default: its configured mode)."""
        model, cfg, _ = load_one_box_per_class(path)
        return cls(model, cfg.model.image_size, device, nms_iou, windows or cfg.model.windows)

    @torch.no_grad()
    def run(self, inputs: Tensor, windows: Tensor, counts: Tensor, sizes: Tensor, top_k: int | None = None,
            *args, **kwargs) -> list[dict[str, Tensor]]:
        """As :meth:`Localizer.run` (its further options with NMS); without NMS, B dicts {"boxes":
        Tensor[C, 4] pixels, "scores": Tensor[C], "labels": Tensor[C]}, best class first."""
        if self.nms_iou is not None:
            return super().run(inputs, windows, counts, sizes, top_k, *args, **kwargs)
        if bool((counts != 1).any()):
            raise UserError(f"one box per class: windows {self.windows!r} give several windows an image; "
                            "use 'whole' or 'center'")
        outputs = self.model(inputs.to(self.device))
        return class_guesses(outputs, windows.to(self.device), sizes.to(self.device), top_k)


def class_guesses(outputs: dict[str, Tensor], windows: Tensor, sizes: Tensor, top_k: int | None = None) -> list[dict]:
    """One window per image: pred_boxes Tensor[B, C, 4] (in [0, 1] of windows Tensor[B, 4] pixels),
    pred_logits Tensor[B, C], sizes Tensor[B, 2] (width, height) -> B dicts of the ``top_k`` (default
    all C) classes' pixel boxes, probabilities and labels, sorted by probability, on the CPU."""
    boxes = crop_to_image(order_corners(outputs["pred_boxes"].float()), windows)  # [B, C, 4]
    boxes = clip_boxes(boxes, sizes[:, 0, None], sizes[:, 1, None])
    scores, labels = outputs["pred_logits"].float().sigmoid().sort(dim=1, descending=True)  # [B, C]
    labels, scores = labels[:, :top_k], scores[:, :top_k]
    picked = boxes.gather(1, labels[..., None].expand(-1, -1, 4))
    return [{"boxes": b.cpu(), "scores": s.cpu(), "labels": lab.cpu()} for b, s, lab in zip(picked, scores, labels)]
