"""The trained localizer for inference: images in, pixel boxes and confidences out.

Each image is cut into windows (:mod:`multibox.inference.windows`: the whole image padded to a square
by default; the §4.1 center square, the §4.3 two scales, or tiles), every window of every image runs through the network in one batch, and
:func:`multibox.inference.postprocess.merge_windows` turns the outputs into per-image detections.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from multibox.config import WINDOW_MODES
from multibox.data import DetectionDataset
from multibox.data.transforms import to_pil
from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint
from multibox.errors import UserError
from multibox.inference.postprocess import merge_windows
from multibox.inference.samples import WindowSamples, collate_windows
from multibox.inference.windows import NUM_WINDOWS, image_windows, window_inputs
from multibox.modeling.localizer import MultiBox

ImageLike = Image.Image | str | Path | Tensor | np.ndarray


class Localizer:
    """A trained DeepMultiBox localizer for inference.

    windows: what it looks at in each image (:data:`multibox.config.WINDOW_MODES`): "whole" (the image
    padded to a square), "center" (§4.1), "multiscale" (§4.3) or "tiles" of ``tile`` pixels overlapping
    by ``overlap``.

    >>> loc = Localizer.from_checkpoint("runs/demo/model.pt")
    >>> boxes, scores = loc.predict("photo.jpg", top_k=10)   # Tensor[N, 4] pixel xyxy, Tensor[N]
    """

    def __init__(self, model: MultiBox, image_size: int, device: str | torch.device = "cpu", nms_iou: float = 0.5,
                 windows: str = "whole", tile: float | None = None, overlap: float = 0.2) -> None:
        if windows not in WINDOW_MODES:
            raise UserError(f"windows {windows!r}: expected one of {', '.join(WINDOW_MODES)}")
        if windows == "tiles" and not tile:
            raise UserError("windows 'tiles' needs a tile size in pixels (--tile SIZE)")
        self.model = model.eval().to(device)
        self.image_size, self.device, self.nms_iou = image_size, torch.device(device), nms_iou
        self.windows, self.tile, self.overlap = windows, tile, overlap

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", windows: str | None = None,
                        tile: float | None = None, overlap: float = 0.2) -> Localizer:
        """The checkpoint's localizer; ``windows`` defaults to the mode it was configured with."""
        model, cfg = model_from_checkpoint(load_checkpoint(path))
        return cls(model, cfg.model.image_size, device, windows=windows or cfg.model.windows, tile=tile,
                   overlap=overlap)

    def image_windows(self, width: float, height: float) -> Tensor:
        """This localizer's windows Tensor[W, 4] of a width x height image."""
        return image_windows(width, height, self.windows, self.tile, self.overlap)

    @torch.no_grad()
    def run(self, inputs: Tensor, windows: Tensor, counts: Tensor, sizes: Tensor,
            top_k: int | None = None) -> list[dict[str, Tensor]]:
        """Detections from prepared windows: inputs Tensor[T, 3, S, S] uint8, windows Tensor[T, 4] pixel
        xyxy, counts Tensor[B] (windows per image), sizes Tensor[B, 2] (width, height) -> B dicts
        {"boxes", "scores"} on the CPU."""
        outputs = self.model(inputs.to(self.device))
        dets = merge_windows(outputs, windows.to(self.device), sizes.to(self.device), self.nms_iou, top_k,
                             counts=counts, drop_cut=self.windows == "tiles")
        return [{k: v.cpu() for k, v in d.items()} for d in dets]

    def predict_batch(self, images: list[ImageLike], top_k: int | None = 10) -> list[tuple[Tensor, Tensor]]:
        """Detections for several images in one forward pass: [(boxes Tensor[N, 4] pixels, scores Tensor[N])]."""
        pils = [to_pil(im) for im in images]
        windows = [self.image_windows(im.width, im.height) for im in pils]  # per image Tensor[W, 4]
        inputs = torch.cat([window_inputs(im, w, self.image_size) for im, w in zip(pils, windows)])  # [T, 3, S, S]
        sizes = torch.tensor([im.size for im in pils], dtype=torch.float32)  # [B, 2] (width, height)
        counts = torch.tensor([len(w) for w in windows], dtype=torch.int64)
        return [(d["boxes"], d["scores"]) for d in self.run(inputs, torch.cat(windows), counts, sizes, top_k)]

    def predict(self, image: ImageLike, top_k: int | None = 10) -> tuple[Tensor, Tensor]:
        """Detections for one image (PIL image, path or Tensor[3, H, W]): (boxes Tensor[N, 4] pixel xyxy, scores Tensor[N])."""
        return self.predict_batch([image], top_k)[0]

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
