"""Request bodies within limits: the byte limit is enforced on Content-Length and again while reading,
the media type is checked from the header and from the file's own header, and the pixel limit (the
readers' decompression-bomb limit) before any pixel is decoded. Nothing here touches a path: uploads
are decoded from memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from io import BytesIO

from PIL import Image

from multibox.data.images import DEFAULT_MAX_PIXELS, open_image, probe_image
from multibox.data.problems import BadImage
from multibox.errors import UserError

DEFAULT_MAX_BYTES = 20 * 2**20  # 20 MiB: a large photo, far below what would strain the server
IMAGE_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}  # media type -> PIL format
FORM_TYPE = "multipart/form-data"


class Upload(BytesIO):
    """An uploaded file in memory; PIL's messages name it "upload" instead of a BytesIO repr."""

    def __repr__(self) -> str:
        return "upload"


class Rejected(UserError):
    """A request the server refuses; ``status`` is its HTTP status code, the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str:
    """The lower-case media type of a Content-Type header ("image/png; x=y" -> "image/png")."""
    return (content_type or "").split(";")[0].strip().lower()


def check_type(content_type: str | None, form_allowed: bool = True) -> str:
    """The media type, if it is an accepted image type (or multipart when ``form_allowed``); else 415."""
    kind = media_type(content_type)
    if kind in IMAGE_TYPES or (form_allowed and kind == FORM_TYPE):
        return kind
    wanted = ", ".join(IMAGE_TYPES) + (f" or {FORM_TYPE}" if form_allowed else "")
    raise Rejected(415, f"content type {kind or '(none)'!r} is not supported: send {wanted}")


def check_length(content_length: str | None, max_bytes: int) -> None:
    """413 when the declared Content-Length is over ``max_bytes`` (checked before reading the body)."""
    if content_length is None:
        return
    if not content_length.strip().isdigit():
        raise Rejected(400, f"Content-Length {content_length!r} is not a number of bytes")
    if int(content_length) > max_bytes:
        raise Rejected(413, f"request body of {int(content_length):,} bytes is over the limit of {max_bytes:,} bytes")


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The whole body from ``chunks``, stopping with 413 as soon as it passes ``max_bytes`` (a body
    without Content-Length, or one longer than it declared, is never held past the limit)."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise Rejected(413, f"request body is over the limit of {max_bytes:,} bytes")
    return bytes(body)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An uploaded file -> 8-bit RGB PIL image (EXIF orientation applied), through
    :func:`multibox.data.images.open_image` as every other image. 400: empty, not an image, truncated;
    413: over ``max_pixels`` (from the header, nothing decoded); 415: a decodable type other than JPEG,
    PNG or WebP."""
    if not data:
        raise Rejected(400, "the image is empty (0 bytes)")
    try:
        info = probe_image(Upload(data), max_pixels)
        if info.format not in IMAGE_TYPES.values():
            raise Rejected(415, f"{info.format} images are not supported: send JPEG, PNG or WebP")
        return open_image(Upload(data), max_pixels)
    except BadImage as exc:  # open_image's UnusableImage; its file name is our in-memory buffer
        status = 413 if exc.problem.kind == "decompression-bomb" else 400
        raise Rejected(status, f"uploaded image: {exc.problem.what}") from None
