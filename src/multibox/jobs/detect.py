"""`multibox detect`: boxes for image files, as OUT/detections.json and drawn images; with a
classifier, each box labelled and scored (§4.2.2).

An image that cannot be read (corrupt, truncated, over the pixel limit) is named in one line on
stderr and skipped; the others are processed. Drawings are OUT/images/STEM.png; inputs sharing a
file stem (a/x.jpg, b/x.jpg) are told apart by their folder (a_x.png, b_x.png), then by a number;
each entry's "path" and "drawing" say which input and which picture belong together.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from multibox.atomic import write_text_atomic
from multibox.data.images import open_image
from multibox.engine.precision import resolve_device
from multibox.errors import UserError
from multibox.inference.detector import Detector
from multibox.inference.entries import detection_entry
from multibox.inference.localizer import Localizer
from multibox.inference.postprocess import check_options
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


def drawing_names(files: list[Path]) -> list[str]:
    """A distinct picture name per input: its stem; FOLDER_STEM where stems repeat; then _2, _3, ...
    (compared without case, as some file systems do)."""
    stems = Counter(p.stem for p in files)
    taken: set[str] = set()
    unique = []
    for path in files:  # a loop over files, not boxes
        name = path.stem if stems[path.stem] == 1 else f"{path.parent.name}_{path.stem}"
        candidate, n = name, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{name}_{n}"
        taken.add(candidate.lower())
        unique.append(candidate)
    return unique


def draw_detections(image: Image.Image, det: dict, class_names: list[str] | None) -> Image.Image:
    """``image`` with its detections drawn, each labelled box in its class's colour."""
    if class_names is None:
        return draw_boxes(image, det["boxes"], det["scores"])
    labels = det["labels"].tolist()
    return draw_boxes(image, det["boxes"], det["scores"], labels=[class_names[i] for i in labels], class_ids=labels)


Predict = Callable[[list[Image.Image]], list[dict]]


def detection_predictor(model_path: str | Path, classifier: str | Path | None, device: str, top_k: int,
                        windows: dict, mode: str, region: str | None, options: dict) -> tuple[Predict, list[str] | None]:
    """(images -> per-image detection dicts, class names or None) for `detect`; windows: the
    Localizer's windows / tile / overlap; options: min_score, iou, max_det."""
    dev = resolve_device(device)
    localizer = Localizer.from_checkpoint(model_path, dev, **windows)
    if classifier is not None:
        detector = Detector.from_checkpoints(model_path, classifier, dev, top_k, mode, region, located=localizer)
        return lambda images: detector.detect_batch(images, **options), detector.class_names
    return lambda images: [{"boxes": b, "scores": s} for b, s in localizer.predict_batch(images, top_k, **options)], None


def read_images(files: list[Path], bar: tqdm) -> list[tuple[int, Image.Image]]:
    """(position, RGB image) of the readable files; each unreadable one named in one line on stderr."""
    readable = []
    for i, path in enumerate(files):
        try:
            readable.append((i, open_image(path)))
        except UserError as exc:
            bar.write(f"{exc}", file=sys.stderr)
    return readable


def detect(model_path: str | Path, inputs: list[str], out_dir: str | Path, classifier: str | Path | None = None,
           top_k: int = 10, device: str = "auto", batch_size: int = 16, draw: bool = True,
           multiscale: bool = False, mode: str = "voc", region: str | None = None, windows: str | None = None,
           tile: float | None = None, overlap: float = 0.2, min_score: float = 0.0, iou: float | None = None,
           max_det: int | None = None, tta: str | None = None) -> Path:
    """`multibox detect`: OUT_DIR/detections.json (entries of :func:`multibox.inference.entries.detection_entry`
    plus "drawing") and OUT_DIR/images/*.png with the boxes drawn.

    top_k: boxes kept per image from the localizer (after NMS at ``iou``, before the classifier);
    max_det: final detections per image (with a classifier: after scoring; alone: the same cap as
    top_k); min_score: the lowest score reported and drawn. windows / tile / overlap: what the
    localizer looks at (default: the checkpoint's, :mod:`multibox.inference.windows`); tta: test-time
    flips / rotations (:mod:`multibox.inference.tta`); multiscale:
    windows="multiscale" (§4.3). Unreadable images are named on stderr and skipped.
    """
    check_options(min_score, iou, top_k, max_det)
    files = expand_inputs(inputs)
    spec = {"windows": "multiscale" if multiscale else windows, "tile": tile, "overlap": overlap, "tta": tta}
    options = {"min_score": min_score, "iou": iou, "max_det": max_det}
    predict, names = detection_predictor(model_path, classifier, device, top_k, spec, mode, region, options)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    pictures = drawing_names(files)
    entries: list[dict] = []
    with tqdm(total=len(files), desc="detect", unit="image", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            readable = read_images(chunk, bar)
            dets = predict([im for _, im in readable]) if readable else []
            for (i, image), det in zip(readable, dets):
                entries.append(write_entry(det, image, chunk[i], pictures[start + i], out, names, draw))
            bar.update(len(chunk))
    if not entries:
        raise UserError(f"none of the {len(files)} image(s) could be read (each is named above)")
    write_text_atomic(out / "detections.json", json.dumps(entries, indent=1))
    return out / "detections.json"


def write_entry(det: dict, image: Image.Image, path: Path, picture: str, out: Path, names: list[str] | None,
                draw: bool) -> dict:
    """One image's detections.json entry; with ``draw``, its picture OUT/images/PICTURE.png written."""
    entry = detection_entry(det, image.width, image.height, names, str(path))
    if draw:
        draw_detections(image, det, names).save(out / "images" / f"{picture}.png")
        entry["drawing"] = f"images/{picture}.png"
    return entry
