"""`multibox detect`: boxes for image files, as OUT/detections.json and drawn images; with a
classifier, each box labelled and scored (§4.2.2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from multibox.data.transforms import to_pil
from multibox.engine.precision import resolve_device
from multibox.errors import UserError
from multibox.inference.detector import Detector
from multibox.inference.localizer import Localizer
from multibox.reports.plots import draw_boxes

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (sorted) in named directories; a missing path is an error."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{item}: no such image file or directory")
    if not files:
        raise UserError(f"no images found in {' '.join(inputs)}")
    return files


def detection_entry(path: Path, image, det: dict, class_names: list[str] | None) -> dict:
    """One image's detections.json entry: boxes, scores, and with a classifier labels (names) and label_ids."""
    entry = {"path": str(path), "width": image.width, "height": image.height,
             "boxes": [[round(float(v), 2) for v in b] for b in det["boxes"]],
             "scores": [round(float(s), 5) for s in det["scores"]]}
    if class_names is not None:
        entry |= {"labels": [class_names[i] for i in det["labels"].tolist()], "label_ids": det["labels"].tolist()}
    return entry


def draw_detections(image, det: dict, class_names: list[str] | None):
    """``image`` with its detections drawn; with labels, each box once, with its best class."""
    if class_names is None:
        return draw_boxes(image, det["boxes"], det["scores"])
    _, first = np.unique(det["box_index"].numpy(), return_index=True)  # sorted by score: first = best class
    first = np.sort(first)
    return draw_boxes(image, det["boxes"][first], det["scores"][first],
                      labels=[class_names[i] for i in det["labels"][first].tolist()])


def detection_predictor(model_path: str | Path, classifier: str | Path | None, device: str, top_k: int,
                        windows: dict, mode: str, region: str | None):
    """(images -> per-image detection dicts, class names or None) for `detect`; windows: the
    Localizer's windows / tile / overlap."""
    dev = resolve_device(device)
    localizer = Localizer.from_checkpoint(model_path, dev, **windows)
    if classifier is not None:
        detector = Detector.from_checkpoints(model_path, classifier, dev, top_k, mode, region, located=localizer)
        return detector.detect_batch, detector.class_names
    return lambda images: [{"boxes": b, "scores": s} for b, s in localizer.predict_batch(images, top_k)], None


def detect(model_path: str | Path, inputs: list[str], out_dir: str | Path, classifier: str | Path | None = None,
           top_k: int = 10, device: str = "auto", batch_size: int = 16, draw: bool = True,
           multiscale: bool = False, mode: str = "voc", region: str | None = None, windows: str | None = None,
           tile: float | None = None, overlap: float = 0.2) -> Path:
    """`multibox detect`: OUT_DIR/detections.json (pixel xyxy boxes, scores, and with a classifier
    (§4.2.2) class names ``labels`` and indices ``label_ids``) and the images with the boxes drawn.
    windows / tile / overlap: what the localizer looks at (default: the checkpoint's, see
    :mod:`multibox.inference.windows`); multiscale: windows="multiscale" (§4.3)."""
    files = expand_inputs(inputs)
    spec = {"windows": "multiscale" if multiscale else windows, "tile": tile, "overlap": overlap}
    predict, names = detection_predictor(model_path, classifier, device, top_k, spec, mode, region)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for start in range(0, len(files), batch_size):
        chunk = [to_pil(p) for p in files[start : start + batch_size]]
        for path, image, det in zip(files[start:], chunk, predict(chunk)):
            entries.append(detection_entry(path, image, det, names))
            if draw:
                draw_detections(image, det, names).save(out / "images" / f"{path.stem}.png")
    (out / "detections.json").write_text(json.dumps(entries, indent=1))
    return out / "detections.json"
