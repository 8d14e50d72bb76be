"""The trained localizer for inference: images in, pixel boxes and confidences out.

Each image is cut into windows (:mod:`multibox.inference.windows`: the whole image padded to a square
by default; the §4.1 center square, the §4.3 two scales, or tiles), every window of every image runs through the network in one batch, and
:func:`multibox.inference.postprocess.merge_windows` turns the outputs into per-image detections.
The network call (:meth:`Localizer.network`) is the only step a backend replaces
(:class:`multibox.inference.onnx_localizer.OnnxLocalizer` runs an exported graph in ONNX Runtime).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from multibox.config import TTA_MODES, WINDOW_MODES, Config
from multibox.data import DetectionDataset
from multibox.data.transforms import to_pil
from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint
from multibox.engine.nms_rule import PAPER_NMS_IOU, configured_nms_iou
from multibox.engine.precision import resolve_device
from multibox.errors import UserError
from multibox.inference.postprocess import check_options, fewest, merge_windows
from multibox.inference.samples import WindowSamples, collate_windows
from multibox.inference.tta import tta_forward
from multibox.inference.windows import NUM_WINDOWS, image_windows, window_inputs
from multibox.modeling.inference_fusion import fuse_for_inference
from multibox.modeling.localizer import MultiBox
from multibox.threads import torch_threads

# Windows through the network at once, so activations stay bounded whatever the number of tiles: on the CPU
# an 81-megapixel PNG in 121 tiles peaked at 1.6 GB with 16, 2.2 GB with 64, 2.5 GB all at once (same boxes).
WINDOW_BATCH = {"cpu": 16, "cuda": 128}
ImageLike = Image.Image | str | Path | Tensor | np.ndarray  # accepted forms: see multibox.data.transforms.to_pil


def image_list(images: list[ImageLike] | tuple | Tensor) -> list[ImageLike]:
    """The images of a batch: a list or tuple of images, or a Tensor[B, 3, H, W] as B images."""
    if isinstance(images, Tensor) and images.dim() == 4:
        return list(images.unbind(0))
    if isinstance(images, (list, tuple)):
        return list(images)
    raise UserError(f"images: expected a list of images or a Tensor[B, 3, H, W], got {type(images).__name__}"
                    + (f" of shape {list(images.shape)}" if hasattr(images, "shape") else ""))


def one_image(image: ImageLike, method: str = "predict") -> ImageLike:
    """``image`` unless it is a batch (Tensor[B, 3, H, W] or a list), which ``method`` does not take."""
    if (isinstance(image, Tensor) and image.dim() == 4) or isinstance(image, (list, tuple)):
        shape = f" of shape {list(image.shape)}" if isinstance(image, Tensor) else ""
        raise UserError(f"image: a batch{shape} given to {method}(), which takes one image; "
                        f"use {method}_batch() for several")
    return image


class Localizer:
    """A trained DeepMultiBox localizer for inference.

    windows: what it looks at in each image (:data:`multibox.config.WINDOW_MODES`): "whole" (the image
    padded to a square), "center" (§4.1), "multiscale" (§4.3) or "tiles" of ``tile`` pixels overlapping
    by ``overlap``. tta: None, or "flip" / "dihedral" to also look at mirrored (and rotated) copies of
    every window, all boxes merged by one NMS (:mod:`multibox.inference.tta`; 2 or 8 forward passes).
    nms_iou: the NMS threshold (:meth:`from_checkpoint`: the model's, set from its training boxes by
    :mod:`multibox.engine.nms_rule`; §4.1's 0.5 for a checkpoint from before). fuse: on the CPU, run the network as :func:`multibox.modeling.inference_fusion.fuse_for_inference`
    rewrites it (faster, same outputs to float rounding; ``model`` is changed in place, so for a model
    the localizer owns: :meth:`from_checkpoint` and the loaders ask for it).

    Images (:meth:`predict`, :meth:`predict_batch`) may be a file path, a PIL image, a numpy array
    [H, W, 3] (uint8, or float in [0, 1]) or a Tensor[3, H, W] (uint8, or float in [0, 1]);
    :meth:`predict_batch` also takes a Tensor[B, 3, H, W] as B images. Anything else is a one-line
    :class:`multibox.errors.UserError` naming what is accepted.

    >>> loc = Localizer.from_checkpoint("runs/demo/model.pt")
    >>> boxes, scores = loc.predict("photo.jpg", top_k=10)   # Tensor[N, 4] pixel xyxy, Tensor[N]
    >>> boxes, scores = loc.predict(array, min_score=0.3, iou=0.45)   # numpy [H, W, 3] uint8
    """

    def __init__(self, model: MultiBox, image_size: int, device: str | torch.device = "cpu", nms_iou: float = PAPER_NMS_IOU,
                 windows: str = "whole", tile: float | None = None, overlap: float = 0.2,
                 tta: str | None = None, fuse: bool = False) -> None:
        device = resolve_device(device) if isinstance(device, (str, int)) else device  # "cuda" without a GPU: one line
        self.model = model.eval().to(device)
        # On the CPU, batch norms folded into the convolutions and the NHWC layout oneDNN prefers: the default
        # model's forward pass 25.6 -> 20.9 ms here (modeling.inference_fusion). It rewrites the model in
        # place, so only a localizer that owns its model asks for it (not training's validation).
        self.memory_format = torch.channels_last if fuse and torch.device(device).type == "cpu" else None
        if self.memory_format is not None:
            fuse_for_inference(self.model)
        self.configure(image_size, device, nms_iou, windows, tile, overlap, tta)

    # torch's intra-op threads around the network (None: as set); a runtime with its own threads sets 1
    torch_threads: int | None = None

    def configure(self, image_size: int, device: str | torch.device, nms_iou: float, windows: str,
                  tile: float | None, overlap: float, tta: str | None) -> None:
        """Check and set what every localizer shares around its network (also
        :class:`multibox.inference.onnx_localizer.OnnxLocalizer`'s)."""
        if windows not in WINDOW_MODES:
            raise UserError(f"windows {windows!r}: expected one of {', '.join(WINDOW_MODES)}")
        if windows == "tiles" and not tile:
            raise UserError("windows 'tiles' needs a tile size in pixels (tile=SIZE)")
        if tta is not None and tta not in TTA_MODES:
            raise UserError(f"tta {tta!r}: expected one of {', '.join(TTA_MODES)} (or none)")
        self.image_size, self.device, self.nms_iou = image_size, torch.device(device), nms_iou
        self.windows, self.tile, self.overlap, self.tta = windows, tile, overlap, tta

    def with_windows(self, windows: str | None = None, tile: float | None = None,
                     overlap: float | None = None) -> Localizer:
        """This localizer looking at other windows (None: keep this one's); the network is shared, not copied."""
        view = copy.copy(self)
        view.configure(self.image_size, self.device, self.nms_iou, windows or self.windows,
                       self.tile if tile is None else tile, self.overlap if overlap is None else overlap, self.tta)
        return view

    @property
    def num_boxes(self) -> int:
        """K, the boxes the network proposes per window."""
        return self.model.num_boxes

    def network(self, inputs: Tensor) -> dict[str, Tensor]:
        """The only step a backend changes: inputs Tensor[T, 3, S, S] uint8 on self.device ->
        {"pred_boxes": Tensor[T, K, 4] xyxy in [0, 1] of each input, "pred_logits": Tensor[T, K]}."""
        if self.memory_format is not None:
            inputs = inputs.contiguous(memory_format=self.memory_format)
        return self.model(inputs)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", windows: str | None = None,
                        tile: float | None = None, overlap: float = 0.2, tta: str | None = None) -> Localizer:
        """The localizer of checkpoint ``path`` (a training run's model file), on ``device`` ("cpu",
        "cuda", "cuda:0", ...); ``windows`` defaults to the mode it was trained with, ``tile`` (pixels)
        and ``overlap`` (fraction of a tile) serve windows="tiles"; ``tta`` as the class."""
        model, cfg = model_from_checkpoint(load_checkpoint(path))
        return cls.for_config(model, cfg, device, windows, tile=tile, overlap=overlap, tta=tta, fuse=True)

    @classmethod
    def for_config(cls, model: MultiBox, cfg: Config, device: str | torch.device = "cpu", windows: str | None = None,
                   **options) -> Localizer:
        """The localizer of ``model`` as ``cfg`` trained it: its input size, its NMS threshold
        (model.nms_iou, :func:`multibox.engine.nms_rule.configured_nms_iou`) and its windows unless
        ``windows`` is given; ``options``: tile, overlap, tta, fuse as the class."""
        return cls(model, cfg.model.image_size, device, configured_nms_iou(cfg), windows or cfg.model.windows, **options)

    def image_windows(self, width: float, height: float) -> Tensor:
        """This localizer's windows Tensor[W, 4] of a width x height image."""
        return image_windows(width, height, self.windows, self.tile, self.overlap)

    @torch.no_grad()
    def forward_windows(self, inputs: Tensor) -> dict[str, Tensor]:
        """The network (with this localizer's tta) on inputs Tensor[T, 3, S, S] uint8, WINDOW_BATCH windows
        (for this device) at a time, so a big image's hundreds of tiles never pass at once:
        {"pred_boxes": Tensor[T, K, 4], "pred_logits": Tensor[T, K]} on self.device
        (:mod:`multibox.jobs.detect_raster` calls it per batch of tiles)."""
        parts, size = [], WINDOW_BATCH.get(self.device.type, WINDOW_BATCH["cpu"])
        for start in range(0, max(len(inputs), 1), size):  # a loop over chunks of windows
            chunk = inputs[start : start + size].to(self.device)
            parts.append(self.network(chunk) if self.tta is None else tta_forward(self.network, chunk, self.tta))
        return parts[0] if len(parts) == 1 else {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    @torch.no_grad()
    def run(self, inputs: Tensor, windows: Tensor, counts: Tensor, sizes: Tensor, top_k: int | None = None,
            min_score: float = 0.0, iou: float | None = None) -> list[dict[str, Tensor]]:
        """Detections from prepared windows: inputs Tensor[T, 3, S, S] uint8, windows Tensor[T, 4] pixel
        xyxy, counts Tensor[B] (windows per image), sizes Tensor[B, 2] (width, height) -> B dicts
        {"boxes", "scores"} on the CPU; ``iou``: the NMS threshold (default: this localizer's)."""
        with torch_threads(self.torch_threads):
            return self.merge(self.forward_windows(inputs), windows, counts, sizes, top_k, min_score, iou)

    def merge(self, outputs: dict[str, Tensor], windows: Tensor, counts: Tensor, sizes: Tensor,
              top_k: int | None = None, min_score: float = 0.0, iou: float | None = None) -> list[dict[str, Tensor]]:
        """:meth:`run`'s second half: the network's outputs of prepared windows -> B dicts on the CPU."""
        dets = merge_windows(outputs, windows.to(self.device), sizes.to(self.device), iou or self.nms_iou, top_k,
                             counts=counts, drop_cut=self.windows == "tiles", min_score=min_score)
        return [{k: v.cpu() for k, v in d.items()} for d in dets]

    def predict_batch(self, images: list[ImageLike] | Tensor, top_k: int | None = 10, min_score: float = 0.0,
                      iou: float | None = None, max_det: int | None = None) -> list[tuple[Tensor, Tensor]]:
        """Detections for several images (a list of the accepted forms, or a Tensor[B, 3, H, W]) in one
        forward pass: per image (boxes Tensor[N, 4] xyxy pixels, scores Tensor[N]) sorted by score.

        top_k / max_det: the most boxes kept per image (for a localizer alone both cap the same count;
        :class:`multibox.inference.detector.Detector` keeps top_k localizer boxes and at most max_det
        detections); min_score: the lowest confidence kept; iou: the NMS threshold (default: the
        localizer's: from a checkpoint, the model's ``model.nms_iou``, set from its training boxes). Boxes
        under 1 pixel wide or tall are never returned.
        """
        check_options(min_score, iou, top_k, max_det)
        pils = [to_pil(im) for im in image_list(images)]
        if not pils:
            return []
        with torch_threads(self.torch_threads):  # the windows' resizing too, not only run()
            dets = self.run(*self.prepare(pils), fewest(top_k, max_det), min_score, iou)
        return [(d["boxes"], d["scores"]) for d in dets]

    def prepare(self, pils: list[Image.Image]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """RGB images -> what :meth:`run` takes: (inputs Tensor[T, 3, S, S] uint8, windows Tensor[T, 4],
        counts Tensor[B], sizes Tensor[B, 2]); with :meth:`forward_windows` and :meth:`merge`, the three
        stages of :meth:`predict_batch` (`detect` overlaps them: :mod:`multibox.jobs.detect_stream`)."""
        windows = [self.image_windows(im.width, im.height) for im in pils]  # per image Tensor[W, 4]
        inputs = torch.cat([window_inputs(im, w, self.image_size) for im, w in zip(pils, windows)])  # [T, 3, S, S]
        sizes = torch.tensor([im.size for im in pils], dtype=torch.float32)  # [B, 2] (width, height)
        counts = torch.tensor([len(w) for w in windows], dtype=torch.int64)
        return inputs, torch.cat(windows), counts, sizes

    def predict(self, image: ImageLike, top_k: int | None = 10, min_score: float = 0.0, iou: float | None = None,
                max_det: int | None = None) -> tuple[Tensor, Tensor]:
        """Detections for one image (a path, PIL image, numpy [H, W, 3] or Tensor[3, H, W]; a
        Tensor[B, 3, H, W] batch goes to :meth:`predict_batch`): (boxes Tensor[N, 4] xyxy pixels,
        scores Tensor[N]); options as :meth:`predict_batch`."""
        return self.predict_batch([one_image(image)], top_k, min_score, iou, max_det)[0]

    # --- over a dataset (:func:`multibox.inference.predict.predict_dataset`) -------------------------

    collate = staticmethod(collate_windows)

    @property
    def windows_per_image(self) -> int:
        return {"multiscale": NUM_WINDOWS, "tiles": 4}.get(self.windows, 1)  # tiles: a typical count

    def samples(self, dataset: DetectionDataset) -> WindowSamples:
        return WindowSamples(dataset, self.image_size, self.windows, self.tile, self.overlap)

    def predict_samples(self, batch: tuple[Tensor, ...]) -> list[dict[str, Tensor] | None]:
        """One loader batch of :class:`WindowSamples` -> detections, None for unreadable images."""
        inputs, windows, counts, sizes, ok = batch  # [T, 3, S, S], [T, 4], [B], [B, 2], [B]
        dets = self.run(inputs, windows, counts, sizes)
        return [d if good else None for d, good in zip(dets, ok.tolist())]
