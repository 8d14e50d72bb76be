"""One loader for every model file a command takes: ``--model model.onnx`` runs in ONNX Runtime
(:class:`~multibox.inference.onnx_localizer.OnnxLocalizer`), anything else is a checkpoint or a run
folder (:class:`~multibox.inference.localizer.Localizer`). Both give the same predict / predict_batch
and dataset interface, so `detect`, `evaluate` and `serve` do not care which they got.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from multibox.config import Config
from multibox.engine.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
from multibox.engine.precision import resolve_device
from multibox.errors import UserError
from multibox.inference.export import decode_array
from multibox.inference.localizer import Localizer
from multibox.inference.onnx_localizer import OnnxLocalizer


@dataclass
class ModelRecord:
    """What a model file says besides its network: the training config, and for `evaluate`'s priors
    baseline the priors Tensor[K, 4] and how often training matched each one, Tensor[K]. None where an
    export written before the metadata does not say."""

    config: Config | None
    priors: Tensor | None
    match_counts: Tensor | None


def is_onnx(path: str | Path) -> bool:
    """Whether ``path`` names an ONNX model (by its suffix, as Ultralytics decides its backends)."""
    return Path(path).suffix.lower() == ".onnx"


def refuse_onnx_classifier(model: str | Path, classifier: str | Path | None) -> None:
    """A one-line UserError for a classifier next to an .onnx localizer (not supported yet)."""
    if classifier is not None and is_onnx(model):
        raise UserError(f"--classifier with --model {model}: an .onnx localizer runs without a classifier; "
                        "use the checkpoint (RUN/best.pt) to label boxes")


def load_localizer(path: str | Path, device: str = "auto", *, spinning: bool = True, windows: str | None = None,
                   tile: float | None = None, overlap: float = 0.2, tta: str | None = None,
                   runtime: str = "onnxruntime") -> Localizer:
    """The localizer of ``path`` (.onnx, checkpoint or run folder) on ``device`` ("auto", "cpu", "cuda",
    ...); windows / tile / overlap / tta as :class:`Localizer` (default windows: the trained mode);
    ``spinning``: ONNX Runtime's threads busy-wait between runs (turn off for serving); ``runtime``: what
    runs an .onnx, "onnxruntime" or "openvino"."""
    return load_with_record(path, device, spinning=spinning, windows=windows, tile=tile, overlap=overlap, tta=tta,
                            runtime=runtime)[0]


def load_with_record(path: str | Path, device: str = "auto", *, spinning: bool = True, windows: str | None = None,
                     tile: float | None = None, overlap: float = 0.2, tta: str | None = None,
                     runtime: str = "onnxruntime") -> tuple[Localizer, ModelRecord]:
    """:func:`load_localizer` and the file's :class:`ModelRecord`."""
    if is_onnx(path):
        loc = OnnxLocalizer.from_file(path, device, windows, tile, overlap, tta, spinning=spinning, runtime=runtime)
        return loc, onnx_record(loc.metadata)
    state = load_checkpoint(path)
    model, cfg = model_from_checkpoint(state)
    counts = state.get("prior_match_counts", torch.zeros(model.num_boxes, dtype=torch.int64))
    loc = Localizer.for_config(model, cfg, resolve_device(device), windows, tile=tile, overlap=overlap, tta=tta,
                               fuse=True)
    return loc, ModelRecord(cfg, model.priors.detach().cpu(), counts)


def onnx_record(metadata: dict) -> ModelRecord:
    """The :class:`ModelRecord` of an export's embedded metadata (config as a checkpoint's is read)."""
    if "config" not in metadata:
        return ModelRecord(None, None, None)
    cfg = checkpoint_config({"config": metadata["config"]})
    priors, counts = (torch.from_numpy(decode_array(metadata[k]).copy()) for k in ("priors", "prior_match_counts"))
    return ModelRecord(cfg, priors, counts)
