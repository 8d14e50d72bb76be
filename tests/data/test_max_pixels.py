"""The pixel limit: one message of ours (never PIL's, which names twice its own limit), raised or lowered
for a whole run by set_max_pixels / the CLI's --max-pixels (detect, evaluate, train)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from fixtures.datasets import basic_spec, by_stem, write_image, write_voc
from PIL import Image

from multibox.cli import main
from multibox.cli.parser import build_parser
from multibox.data.images import (
    DEFAULT_MAX_PIXELS,
    UnusableImage,
    open_image,
    pixel_limit,
    probe_image,
    set_max_pixels,
)
from multibox.data.problems import ProblemLog
from multibox.data.voc import VOCDataset
from multibox.errors import UserError


@pytest.fixture(autouse=True)
def _reset_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # PIL's global, restored after
    yield
    set_max_pixels(None)  # the limit is process-wide: no test leaves it set


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG declaring width x height 1-bit pixels with almost no data: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    return path


def test_a_400_megapixel_image_is_refused_in_our_words(tmp_path):
    big = png_header(tmp_path / "ortho.png", 20_000, 20_000)  # over twice PIL's limit: PIL itself refuses it
    with pytest.raises(UnusableImage) as caught:
        open_image(big)
    message = str(caught.value)
    assert message.startswith(f"{big}: decompression bomb refused: 400,000,000 pixels exceeds the limit "
                              f"max_pixels={DEFAULT_MAX_PIXELS:,}")
    assert "--max-pixels" in message and "\n" not in message
    assert "DOS attack" not in message and "178" not in message  # PIL's text and its doubled limit are gone
    between = png_header(tmp_path / "mid.png", 10_000, 10_000)  # over our limit, under PIL's error: same words
    with pytest.raises(UnusableImage, match=r"mid\.png: decompression bomb refused: 10000x10000 = 100,000,000 "
                                            r"pixels exceeds the limit max_pixels=89,478,485 \(raise max_pixels"):
        probe_image(between)


def test_set_max_pixels_raises_and_lowers_every_read(tmp_path):
    big = png_header(tmp_path / "ortho.png", 20_000, 20_000)
    set_max_pixels(400_000_000)
    assert pixel_limit() == pixel_limit(1_000) == 400_000_000
    assert (probe_image(big).width, probe_image(big).height) == (20_000, 20_000)  # header read, nothing decoded
    small = write_image(tmp_path / "small.jpg", 64, 48)
    set_max_pixels(3_000)
    with pytest.raises(UnusableImage, match=r"64x48 = 3,072 pixels exceeds the limit max_pixels=3,000"):
        open_image(small)
    set_max_pixels(None)
    assert open_image(small).size == (64, 48) and pixel_limit() == DEFAULT_MAX_PIXELS


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "big"])
def test_set_max_pixels_refuses_what_is_not_a_pixel_count(bad):
    with pytest.raises(UserError, match=r"^max_pixels .*: expected a whole number of pixels >= 1$"):
        set_max_pixels(bad)


def test_the_process_limit_reaches_the_dataset_readers_and_their_cache_key(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())  # img_b is 50 x 70 = 3500 pixels, the others smaller
    assert sorted(by_stem(VOCDataset(root, "train", problems=ProblemLog(echo=None)))) == ["img_a", "img_b", "img_c"]
    set_max_pixels(3_200)
    log = ProblemLog(echo=None)
    dataset = VOCDataset(root, "train", problems=log)  # the cached index of the first read must not be reused
    assert sorted(by_stem(dataset)) == ["img_a", "img_c"] and dict(log.counts) == {"decompression-bomb": 1}


@pytest.mark.parametrize("command", [["train"], ["train-classifier"], ["evaluate", "--model", "m.pt"],
                                     ["detect", "--model", "m.pt", "x.png"]])
def test_max_pixels_flag_on_train_evaluate_detect(command):
    args = build_parser().parse_args([*command, "--max-pixels", "400000000"])
    assert args.max_pixels == 400_000_000
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*command, "--max-pixels", "0"])
    assert caught.value.code == 2


def test_the_cli_sets_the_limit_before_the_command_runs(tmp_path, capsys):
    code = main(["evaluate", "--model", str(tmp_path / "missing.pt"), "--max-pixels", "123456"])
    assert code == 2 and "missing.pt" in capsys.readouterr().err  # the command itself failed, one line
    assert pixel_limit() == 123_456


def test_pil_limit_is_raised_not_disabled(tmp_path):
    set_max_pixels(500_000_000)
    probe_image(write_image(tmp_path / "a.jpg", 8, 8))
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= 250_000_000
