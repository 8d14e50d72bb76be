"""open_image: the one way to open a single image (detect, the server) with the readers' limits."""

import pytest
from PIL import Image

from multibox.data.images import UnusableImage, open_image
from multibox.data.problems import BadImage
from multibox.errors import UserError


def test_rgb_and_exif_orientation_applied(tmp_path):
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the oriented image is taller than wide
    Image.new("L", (40, 20), 128).save(path, exif=exif)
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (20, 40)


def test_over_limit_refused_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    with pytest.raises(UnusableImage, match=r"big\.png: decompression bomb refused: 100x100"):
        open_image(path, max_pixels=9_999)
    assert decoded == []  # no pixel was decoded


def test_truncated_file_is_a_one_line_user_error(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.effect_noise((64, 64), 60).convert("RGB").save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, pixels cut
    with pytest.raises(UserError) as info:
        open_image(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "truncated or corrupt" in message and "\n" not in message
    assert isinstance(info.value, BadImage)  # the training pipeline still skips it like any bad image


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_undecodable_or_missing(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(UnusableImage, match="x.png: not a readable image"):
        open_image(path)
    with pytest.raises(UnusableImage, match="image file not found"):
        open_image(tmp_path / "missing.png")
