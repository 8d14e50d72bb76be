"""`multibox data check` and `multibox data show`: report contents, list every problem, exit codes, drawings."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fixtures.datasets import basic_spec, write_coco, write_voc
from PIL import Image

from multibox.jobs.data import check_main, show_main
from multibox.data.check import histogram


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))


def _check(data, split="train", **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = check_main(str(data), split, out=out, **kwargs)
    return code, out.getvalue()


def test_check_usable_dataset_reports_counts_and_exits_0(tmp_path):
    code, text = _check(write_voc(tmp_path / "voc", basic_spec()))
    assert code == 0, text
    assert "3 images (1 without objects), 3 objects (0 ignored), 3 classes" in text
    assert [line.split() for line in text.splitlines() if line.strip().startswith(("apple", "kiwi", "pear"))] == [
        ["apple", "1"],
        ["kiwi", "1"],
        ["pear", "1"],
    ]
    assert "box size, sqrt(area) in pixels:" in text and "box aspect ratio, width/height:" in text
    bucket_lines = [
        line.split() for line in text.splitlines() if line.strip().endswith(tuple("0123456789")) and "%" in line
    ]
    assert [b[0] for b in bucket_lines] == ["0-5%", "5-15%", "15-50%", "50-100%"]
    assert sum(int(b[1]) for b in bucket_lines) == 12  # 4 crops x 3 images
    assert "0 problem(s)" in text and text.rstrip().endswith("result: usable")


def test_check_lists_every_problem_and_exits_1(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    xml = root / "Annotations" / "img_a.xml"
    xml.write_text(xml.read_text().replace("<xmax>30</xmax>", "<xmax>3</xmax>"))
    jpeg = root / "JPEGImages" / "img_b.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (70, 50, 3), dtype=np.uint8)
    Image.fromarray(noise).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    code, text = _check(root)
    assert code == 1, text
    assert f"{xml}: object 1 'apple': degenerate box" in text  # found while indexing
    assert f"{jpeg}: truncated or corrupt image" in text  # found by decoding every image
    assert "2 problem(s)" in text and "result: problems found" in text


def test_check_unreadable_exits_2(tmp_path):
    code, text = _check(tmp_path / "nowhere")
    assert code == 2 and text.startswith(f"error: {tmp_path / 'nowhere'}: ") and "no such file" in text
    json_path = write_coco(tmp_path / "coco", basic_spec())
    for image in (tmp_path / "coco" / "train").iterdir():
        image.write_bytes(b"garbage")
    (tmp_path / "coco" / "train" / "img_a.jpg").unlink()
    (tmp_path / "coco" / "train" / "img_b.jpg").unlink()
    code, text = _check(json_path, probe_images=False)  # only img_c.jpg is still there, and it is garbage
    assert code == 2 and "result: unreadable" in text and "img_a.jpg: image file not found" in text


def test_histogram_counts_each_bin():
    lines = histogram(np.array([1.0, 20.0, 20.0, 600.0]), [16, 32, 64, 128, 256, 512])
    assert [int(line.split()[-1]) for line in lines] == [1, 2, 0, 0, 0, 0, 1]
    assert lines[0].split()[:2] == ["<", "16"] and lines[-1].split()[:2] == [">=", "512"]


def test_show_draws_boxes_on_n_images(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", basic_spec())
    show_main(str(root), "train", tmp_path / "out", n=2)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["00000_img_a.jpg", "00002_img_c.jpg"]  # spread over the split: first and last
    assert "wrote 2 image(s)" in capsys.readouterr().out
    drawn = np.asarray(Image.open(tmp_path / "out" / "00000_img_a.jpg")).astype(int)
    plain = np.asarray(Image.open(root / "JPEGImages" / "img_a.jpg")).astype(int)
    # The outline of box [4, 6, 30, 40] is drawn on its left edge, the interior left alone.
    assert np.abs(drawn[20, 4] - plain[20, 4]).sum() > 60 and np.abs(drawn[30, 15] - plain[30, 15]).sum() < 30
