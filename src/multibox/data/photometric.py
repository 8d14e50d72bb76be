"""Photometric jitter of training images: the light, colour and sharpness of another day or camera.

A user's next photo differs from the training photos in exposure, white balance, season (green or grey
crowns), haze and compression more than in geometry. The frozen-feature training caches each image's
backbone maps once per view (mirror, rotations, scales: :mod:`multibox.engine.feature_cache`), so each
cached view gets its own random jitter: the head sees as many lightings as views, at no extra backbone
cost. Pixels move, boxes do not (a jitter is a per-pixel colour map plus a blur: no geometry).

The operations are torchvision's (``torchvision.transforms.v2.functional``); the strength ``s`` in
[0, 1] scales every range at once (s = 1: brightness and contrast x [0.6, 1.4], saturation x [0.4, 1.6],
hue +-0.06 of the colour wheel, a Gaussian blur of sigma up to 1.2 px half of the time, JPEG quality
down to 40 a quarter of the time, with PIL's encoder).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from multibox.data.images import open_image

BRIGHTNESS, CONTRAST, SATURATION, HUE, BLUR_SIGMA, JPEG_QUALITY = 0.4, 0.4, 0.6, 0.06, 1.2, 40
BLUR_SHARE, JPEG_SHARE = 0.5, 0.25


def jitter(pixels: Tensor, strength: float, rng: np.random.Generator, gray: float = 0.0) -> Tensor:
    """A random photometric jitter of uint8 Tensor[3, H, W] at ``strength`` (0: unchanged), uint8 out;
    with probability ``gray`` the view is also turned grey (dead or leafless crowns, other seasons: the
    head must not lean on green alone)."""
    if strength <= 0 and gray <= 0:
        return pixels
    s = float(strength)
    out = pixels
    if rng.random() < gray:
        out = TF.rgb_to_grayscale(out, num_output_channels=3)
    out = TF.adjust_brightness(out, 1 + s * BRIGHTNESS * rng.uniform(-1, 1))
    out = TF.adjust_contrast(out, 1 + s * CONTRAST * rng.uniform(-1, 1))
    out = TF.adjust_saturation(out, 1 + s * SATURATION * rng.uniform(-1, 1))
    out = TF.adjust_hue(out, s * HUE * rng.uniform(-1, 1))
    if rng.random() < BLUR_SHARE:
        sigma = max(0.1, s * BLUR_SIGMA * rng.random())
        out = TF.gaussian_blur(out, kernel_size=2 * int(np.ceil(2 * sigma)) + 1, sigma=sigma)
    if rng.random() < JPEG_SHARE:
        out = jpeg(out.to(torch.uint8), int(round(100 - s * (100 - JPEG_QUALITY) * rng.random())))
    return out.to(torch.uint8)


def jpeg(pixels: Tensor, quality: int) -> Tensor:
    """uint8 Tensor[3, H, W] through a JPEG round trip at ``quality`` (PIL's codec, as users' photos were saved)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    decoded = np.asarray(open_image(buffer))  # the library's one way to decode (a buffer is a file to PIL)
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1)
