"""The trained localizer for inference: images in, pixel boxes and confidences out.

Each image is cut into windows (:mod:`multibox.inference.windows`: the §4.1 center square by default,
or the §4.3 two scales), every window of every image runs through the network in one batch, and
:func:`multibox.inference.postprocess.merge_windows` turns the outputs into per-image detections.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import default_collate

from multibox.data import DetectionDataset
from multibox.data.transforms import to_pil
from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint
from multibox.inference.postprocess import merge_windows
from multibox.inference.samples import WindowSamples
from multibox.inference.windows import NUM_WINDOWS, image_windows, window_inputs
from multibox.modeling.localizer import MultiBox

ImageLike = Image.Image | str | Path | Tensor | np.ndarray


class Localizer:
    """A trained DeepMultiBox localizer for inference.

    windows: what it looks at in each image, "center" (§4.1) or "multiscale" (§4.3).

    >>> loc = Localizer.from_checkpoint("runs/demo/model.pt")
    >>> boxes, scores = loc.predict("photo.jpg", top_k=10)   # Tensor[N, 4] pixel xyxy, Tensor[N]
    """

    def __init__(self, model: MultiBox, image_size: int, device: str | torch.device = "cpu", nms_iou: float = 0.5,
                 windows: str = "center") -> None:
        self.model = model.eval().to(device)
        self.image_size, self.device, self.nms_iou, self.windows = image_size, torch.device(device), nms_iou, windows

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", windows: str = "center") -> Localizer:
        model, cfg = model_from_checkpoint(load_checkpoint(path))
        return cls(model, cfg.model.image_size, device, windows=windows)

    @torch.no_grad()
    def run(self, inputs: Tensor, windows: Tensor, sizes: Tensor, top_k: int | None = None) -> list[dict[str, Tensor]]:
        """Detections from prepared windows: inputs Tensor[B*W, 3, S, S] uint8, windows Tensor[B, W, 4]
        pixel xyxy, sizes Tensor[B, 2] (width, height) -> B dicts {"boxes", "scores"} on the CPU."""
        outputs = self.model(inputs.to(self.device))
        dets = merge_windows(outputs, windows.to(self.device), sizes.to(self.device), self.nms_iou, top_k)
        return [{k: v.cpu() for k, v in d.items()} for d in dets]

    def predict_batch(self, images: list[ImageLike], top_k: int | None = 10) -> list[tuple[Tensor, Tensor]]:
        """Detections for several images in one forward pass: [(boxes Tensor[N, 4] pixels, scores Tensor[N])]."""
        pils = [to_pil(im) for im in images]
        sizes = torch.tensor([im.size for im in pils], dtype=torch.float32)  # [B, 2] (width, height)
        windows = torch.stack([image_windows(w, h, self.windows) for w, h in sizes.tolist()])  # [B, W, 4]
        inputs = torch.cat([window_inputs(im, w, self.image_size) for im, w in zip(pils, windows)])  # [B*W, 3, S, S]
        return [(d["boxes"], d["scores"]) for d in self.run(inputs, windows, sizes, top_k)]

    # --- over a dataset (:func:`multibox.inference.predict.predict_dataset`) -------------------------

    collate = staticmethod(default_collate)

    @property
    def windows_per_image(self) -> int:
        return NUM_WINDOWS if self.windows == "multiscale" else 1

    def samples(self, dataset: DetectionDataset) -> WindowSamples:
        return WindowSamples(dataset, self.image_size, self.windows)

    def predict_samples(self, batch: tuple[Tensor, Tensor, Tensor, Tensor]) -> list[dict[str, Tensor] | None]:
        """One loader batch of :class:`WindowSamples` -> detections, None for unreadable images."""
        inputs, windows, sizes, ok = batch  # [B, W, 3, S, S], [B, W, 4], [B, 2], [B]
        dets = self.run(inputs.flatten(0, 1), windows, sizes)  # [B*W, 3, S, S]
        return [d if good else None for d, good in zip(dets, ok.tolist())]

    def predict(self, image: ImageLike, top_k: int | None = 10) -> tuple[Tensor, Tensor]:
        """Detections for one image (PIL image, path or Tensor[3, H, W]): (boxes Tensor[N, 4] pixel xyxy, scores Tensor[N])."""
        return self.predict_batch([image], top_k)[0]
