"""Robust image loading: every file becomes an 8-bit RGB image in its EXIF-oriented frame, or a BadImage.

Conventions (the same for every reader):

* **Orientation.** The EXIF orientation tag is applied (:func:`PIL.ImageOps.exif_transpose`) and box
  annotations are taken to be in that *oriented* frame: what a viewer shows, what labelme/CVAT annotate,
  and what Ultralytics users get (OpenCV's ``imread`` applies the tag too). Widths and heights written in
  annotation files may be the raw sensor-frame size, swapped for orientations 5-8; records use the
  oriented size from :func:`probe_image`.
* **Colour.** Grayscale ("1", "L"), palette ("P"), CMYK, YCbCr, LAB and HSV are converted with PIL.
  Images with an alpha channel (RGBA, LA, RGBa, La, PA, palette with transparency) are **composited on
  black**: transparent pixels store undefined colours (optimizers overwrite them freely), so black gives
  every transparent region the same, reproducible value instead. 16-bit and 32-bit integer images
  ("I;16", "I;16B", "I;16L", "I") are scaled to 8 bit by 255/65535; float ("F") images are taken as 0-255
  and clipped. Each conversion is counted as a note.
* **Damage.** Truncated or corrupt files fail in ``Image.load()`` (``ImageFile.LOAD_TRUNCATED_IMAGES`` is
  left False: a half-grey image with boxes on the missing half would train the wrong thing).
* **Decompression bombs.** An image of more than ``max_pixels`` pixels (default PIL's 89,478,485) is
  refused from its header, before any pixel is decoded, with one message of ours naming the limit and
  the way to raise it (PIL's own error, which names twice its limit, never reaches the user).
  :func:`set_max_pixels` sets one limit for every read of the process (the CLI's ``--max-pixels``);
  without it each reader uses its own ``max_pixels``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from multibox.data.problems import BadImage, Problem, ProblemLog
from multibox.errors import UserError

__all__ = ["DEFAULT_MAX_PIXELS", "ImageInfo", "UnusableImage", "probe_image", "load_rgb", "open_image", "to_rgb",
           "set_max_pixels", "pixel_limit"]

#: PIL's own default for Image.MAX_IMAGE_PIXELS (a 1/4 GiB 24-bit image).
DEFAULT_MAX_PIXELS = 89_478_485
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = {"RGBA", "LA", "RGBa", "La", "PA"}
_WIDE_INT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_process_limit: int | None = None  # set_max_pixels: one limit for every read of this process


@dataclass(frozen=True)
class ImageInfo:
    """What an image header says. width/height are of the *oriented* image."""

    width: int
    height: int
    orientation: int  # EXIF orientation 1-8 (1 when absent)
    mode: str
    format: str | None

    @property
    def swapped(self) -> bool:
        """True when orientation turns the image by 90 degrees (raw width/height are swapped)."""
        return self.orientation in (5, 6, 7, 8)


class UnusableImage(BadImage, UserError):
    """A :class:`BadImage` that is also a :class:`UserError`: the training pipeline skips it like any
    BadImage; where one image was asked for (``detect``, the server) it is a one-line error naming the file."""


def _bad(kind: str, path: Path | str, what: str, action: str = "image skipped") -> UnusableImage:
    return UnusableImage(Problem(kind, str(path), "", what, action))


def set_max_pixels(limit: int | None) -> None:
    """One pixel limit for every image this process reads (the CLI's ``--max-pixels``), above or below
    each reader's own ``max_pixels``; None returns to the readers' own limits."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"max_pixels {limit!r}: expected a whole number of pixels >= 1")
    global _process_limit
    _process_limit = limit


def pixel_limit(max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The limit a read with ``max_pixels`` applies: the process-wide one of :func:`set_max_pixels` if set."""
    return _process_limit if _process_limit is not None else max_pixels


def too_many_pixels(limit: int, size: str) -> str:
    """Our one message for an image over the pixel limit: its size ("W x H = N", or N), the limit, how to raise it."""
    return (f"decompression bomb refused: {size} pixels exceeds the limit max_pixels={limit:,} "
            f"(raise max_pixels, on the command line --max-pixels, to read an image this large)")


def _allow_pil_limit(max_pixels: int) -> None:
    """Let PIL's global bomb check (error above 2 x MAX_IMAGE_PIXELS) pass images our own limit allows.

    PIL's limit is process-global; it is only ever raised to the configured limit, never disabled.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and 2 * current < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _open(path: Path | str, max_pixels: int) -> Image.Image:
    """Open the header, refusing missing, unreadable and oversized files with a BadImage."""
    max_pixels = pixel_limit(max_pixels)
    _allow_pil_limit(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own check follows
            image = Image.open(path)
    except FileNotFoundError:
        raise _bad("missing-image", path, "image file not found") from None
    except Image.DecompressionBombError as error:  # over twice PIL's limit, itself >= ours: say it in our words
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(found.group(1)):,}" if found else f"more than {2 * (Image.MAX_IMAGE_PIXELS or max_pixels):,}"
        raise _bad("decompression-bomb", path, too_many_pixels(max_pixels, size)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise _bad("unreadable-image", path, f"not a readable image ({error})") from None
    pixels = image.width * image.height
    if pixels > max_pixels:
        image.close()
        size = f"{image.width}x{image.height} = {pixels:,}"
        raise _bad("decompression-bomb", path, too_many_pixels(max_pixels, size))
    return image


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block must not lose an otherwise good image
        return 1
    return value if 1 <= value <= 8 else 1


def probe_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read only the header: oriented size, orientation, mode. Raises :class:`BadImage`."""
    with _open(path, max_pixels) as image:
        orientation = _orientation(image)
        w, h = image.size
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        return ImageInfo(w, h, orientation, image.mode, image.format)


def _draft(image: Image.Image, target_size: tuple[int, int], orientation: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while staying >= target_size (oriented frame)."""
    if image.format != "JPEG":
        return
    tw, th = target_size
    if orientation in (5, 6, 7, 8):  # draft works in the raw frame
        tw, th = th, tw
    # Keep the mode (grayscale and CMYK are converted below); only the DCT scale changes.
    image.draft(None, (max(1, int(tw)), max(1, int(th))))


def _wide_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float single-channel image -> 8-bit "L"."""
    values = np.asarray(image).astype(np.float32)
    if image.mode != "F":
        values = values * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def _on_black(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (0, 0, 0))
    background.paste(rgba, mask=rgba.getchannel("A"))  # blends by alpha
    return background


def to_rgb(image: Image.Image) -> tuple[Image.Image, str | None]:
    """8-bit RGB version of a loaded image and the note describing the conversion (None if already RGB)."""
    mode = image.mode
    if mode == "RGB":
        return image, None
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        return _on_black(image), f"converted {mode}->RGB (alpha composited on black)"
    if mode in _WIDE_INT_MODES or mode == "F":
        return _wide_to_l(image).convert("RGB"), f"converted {mode}->RGB (scaled to 8 bit)"
    return image.convert("RGB"), f"converted {mode}->RGB"


def _decode(image: Image.Image, path: Path | str) -> None:
    try:
        image.load()
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, EOFError, zlib errors...
        what = f"truncated or corrupt image ({type(error).__name__}: {error})"
        raise _bad("corrupt-image", path, what) from None


def load_rgb(
    path: Path | str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: tuple[int, int] | None = None,
    problems: ProblemLog | None = None,
) -> Image.Image:
    """Decode ``path`` to an 8-bit RGB image in its EXIF-oriented frame; raises :class:`BadImage`.

    target_size: (width, height) the caller needs at least, in the oriented frame. Large JPEGs are then
        decoded at a DCT scale of 1/2, 1/4 or 1/8 (``Image.draft``) that keeps both sides >= target, so
        the result may be *smaller* than the file: map pixel boxes by ``result.width / original width``.
    problems: receives a note for each colour-mode conversion.
    """
    with _open(path, max_pixels) as image:
        orientation = _orientation(image)
        if target_size is not None:
            _draft(image, target_size, orientation)
        _decode(image, path)
        oriented = ImageOps.exif_transpose(image) if orientation != 1 else image
        rgb, note = to_rgb(oriented)
        if note and problems is not None:
            problems.note(note)
        return rgb  # pixels are loaded, so closing the file leaves the image usable


def open_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The image at ``path`` as 8-bit RGB in its EXIF-oriented frame, decoded in full.

    The one way to open a single image outside the readers (``detect``, the server): an image of more
    than ``max_pixels`` pixels is refused from its header before any pixel is decoded, and a missing,
    truncated or undecodable file raises :class:`UnusableImage` (a UserError) whose one-line message
    names the file.
    """
    return load_rgb(path, max_pixels)
