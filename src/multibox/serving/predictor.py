"""The served model: a localizer checkpoint or exported .onnx (and optionally a classifier, with a
checkpoint), run on batches of uploaded images through the same loader
(:func:`multibox.inference.loading.load_localizer`), :class:`~multibox.inference.localizer.Localizer`
and :class:`~multibox.inference.detector.Detector` as `multibox detect`, answered as
:func:`multibox.inference.entries.detection_entry` dicts. An .onnx runs in ONNX Runtime with its
threads' spinning off: requests arrive with gaps, and spinning threads would take the cores the
HTTP side needs between forward passes.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torch import Tensor

from multibox.engine.checkpoint import checkpoint_config, load_checkpoint
from multibox.errors import UserError
from multibox.inference.detector import Detector
from multibox.inference.entries import detection_entry
from multibox.inference.loading import is_onnx, load_localizer, refuse_onnx_classifier
from multibox.inference.localizer import Localizer
from multibox.serving.options import DetectOptions

RUN_FILES = ("best.pt", "last.pt", "model.pt")  # what a run folder is served by, in this order


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as it is, or a run folder's best.pt, else last.pt, else model.pt."""
    path = Path(path)
    if not path.is_dir():
        return path  # load_checkpoint names a missing file
    for name in RUN_FILES:
        if (path / name).is_file():
            return path / name
    raise UserError(f"{path}: a folder without {', '.join(RUN_FILES[:-1])} or {RUN_FILES[-1]}")


def checkpoint_info(state: dict, path: Path) -> dict:
    """What GET /v1/model says about one checkpoint (no server paths but the file's name)."""
    cfg = checkpoint_config(state)
    return {"file": path.name, "task": state.get("task", "localizer"), "backbone": cfg.model.backbone,
            "head": cfg.model.head, "image_size": cfg.model.image_size, "class_names": state.get("class_names"),
            "training_data": cfg.data.data, "training_split": cfg.data.split, "step": state.get("step")}


def model_info(localizer: Localizer, path: Path) -> dict:
    """GET /v1/model's entry for the served localizer: :func:`checkpoint_info`, or for an .onnx the same
    facts from its embedded training config."""
    if not is_onnx(path):
        return checkpoint_info(load_checkpoint(path), path)
    meta = localizer.metadata
    state = {"config": meta["config"], "class_names": meta.get("class_names")} if "config" in meta else None
    facts = checkpoint_info(state, path) if state else {"file": path.name, "image_size": localizer.image_size}
    return facts | {"task": "localizer", "step": None, "format": "onnx"}


def keep(det: dict[str, Tensor], top_k: int, min_score: float) -> dict[str, Tensor]:
    """The first ``top_k`` rows scoring at least ``min_score`` (rows are sorted by score)."""
    mask = det["scores"] >= min_score
    return {k: v[mask][:top_k] for k, v in det.items()}


class Predictor:
    """A localizer (and optional classifier) ready to serve; :meth:`run` is called from one thread."""

    def __init__(self, localizer: Localizer, detector: Detector | None, info: dict) -> None:
        self.localizer, self.detector, self.info = localizer, detector, info

    @classmethod
    def from_checkpoints(cls, model: str | Path, classifier: str | Path | None = None,
                         device: str = "auto", runtime: str = "onnxruntime") -> Predictor:
        """Load a localizer checkpoint (or run folder, or exported .onnx, run by ``runtime``) and optionally
        a classifier, as `multibox detect` does."""
        refuse_onnx_classifier(model, classifier)
        model_path = resolve_checkpoint(model)
        localizer = load_localizer(model_path, device, spinning=False, runtime=runtime)
        dev = localizer.device
        info = {"localizer": model_info(localizer, model_path)}
        info["localizer"] |= {"num_boxes": localizer.num_boxes, "windows": localizer.windows}
        info["classifier"], detector = None, None
        if classifier is not None:
            cls_path = resolve_checkpoint(classifier)
            detector = Detector.from_checkpoints(model_path, cls_path, dev, located=localizer)
            info["classifier"] = checkpoint_info(load_checkpoint(cls_path), cls_path) | {"region": detector.region}
        info["device"] = f"{runtime} {localizer.session.get_providers()[0]}" if is_onnx(model_path) else str(dev)
        return cls(localizer, detector, info)

    @property
    def class_names(self) -> list[str] | None:
        """The classifier's class names, None without one."""
        return None if self.detector is None else self.detector.class_names

    def localizer_for(self, options: DetectOptions) -> Localizer:
        """The served network with the windows ``options`` ask for (a view, the weights are shared)."""
        if options.windows is None and options.tile is None:
            return self.localizer
        return self.localizer.with_windows(options.windows, options.tile, options.overlap)

    def detect_group(self, images: list[Image.Image], options: DetectOptions) -> list[dict[str, Tensor]]:
        """Detections of images that share a batch key, in one forward pass (unfiltered)."""
        localizer = self.localizer_for(options)
        if not options.classify:
            return [{"boxes": b, "scores": s} for b, s in localizer.predict_batch(images, options.top_k)]
        base = self.detector
        detector = Detector(localizer, base.classifier, base.class_names, base.classifier_size, base.region,
                            options.top_k)
        return detector.detect_batch(images)  # each box once, with its best label (as `multibox detect`)

    def run(self, images: list[Image.Image], options: list[DetectOptions]) -> list[dict]:
        """One detection entry per image; images whose options share a batch key go through one pass."""
        groups: dict[tuple, list[int]] = {}
        for i, opt in enumerate(options):
            groups.setdefault(opt.batch_key(), []).append(i)
        entries: list[dict] = [{}] * len(images)
        for members in groups.values():
            biggest = max((options[i] for i in members), key=lambda o: o.top_k)
            dets = self.detect_group([images[i] for i in members], biggest)
            for i, det in zip(members, dets):
                det = keep(det, options[i].top_k, options[i].min_score)
                names = self.class_names if options[i].classify else None
                entries[i] = detection_entry(det, images[i].width, images[i].height, names)
        return entries
