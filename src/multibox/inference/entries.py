"""One image's entry of ``detections.json`` (``multibox detect``) and of the server's reply.

``{"path" (only when given), "width", "height", "boxes": [[x1, y1, x2, y2], ...] (pixels, 2 decimals),
"scores": [...] (4 significant digits)}``, and with a classifier, per box (one element per box: its best
class, never a box repeated once per class): ``"labels"`` (class names), ``"label_ids"`` (indices into the
class names) and ``"label_scores"`` (the classifier's probability of that class). ``scores`` are then the
§4.2.2 detection scores (localizer confidence x that probability). Parallel lists, so
:func:`multibox.evaluation.detection_files.read_detections` reads the file back.

Scores keep significant digits, not decimals: a weak score such as 3.2e-06 must not become 0.0.
"""

from __future__ import annotations

from torch import Tensor

SCORE_DIGITS = 4  # significant digits of a score
BOX_DECIMALS = 2  # decimals of a pixel coordinate


def significant(values: Tensor, digits: int = SCORE_DIGITS) -> list[float]:
    """Tensor[N] -> N floats rounded to ``digits`` significant digits."""
    return [float(f"{v:.{digits}g}") for v in values.float().tolist()]


def pixel_boxes(boxes: Tensor) -> list[list[float]]:
    """boxes: Tensor[N, 4], xyxy pixels -> N lists of 4 floats with 2 decimals."""
    return [[round(v, BOX_DECIMALS) for v in box] for box in boxes.double().reshape(-1, 4).tolist()]


def detection_entry(det: dict[str, Tensor], width: int, height: int, class_names: list[str] | None = None,
                    path: str | None = None) -> dict:
    """One image's entry (module docstring) from its detections.

    det: {"boxes": Tensor[N, 4] xyxy pixels, "scores": Tensor[N]} and, when ``class_names`` is given,
    "labels" Tensor[N] (class indices) and "label_scores" Tensor[N] (one per box).
    """
    entry: dict = {} if path is None else {"path": str(path)}
    entry |= {"width": int(width), "height": int(height), "boxes": pixel_boxes(det["boxes"]),
              "scores": significant(det["scores"])}
    if class_names is not None:
        ids = det["labels"].tolist()
        entry |= {"labels": [class_names[i] for i in ids], "label_ids": ids,
                  "label_scores": significant(det["label_scores"])}
    return entry
