"""Bad input: every case is reported with its file (and line/object), and nothing else is lost."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fixtures.datasets import (
    SpecImage,
    basic_spec,
    by_stem,
    coco_dict,
    write_coco,
    write_image,
    write_noise,
    write_voc,
    write_yolo,
)
from PIL import Image

from multibox.data import build_dataset
from multibox.data.coco import COCODataset
from multibox.data.images import load_rgb, probe_image
from multibox.data.problems import BadImage, ProblemLog
from multibox.data.voc import VOCDataset
from multibox.data.yolo import YOLODataset
from multibox.errors import UserError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))


def _quiet() -> ProblemLog:
    return ProblemLog(echo=None)


def _only(log: ProblemLog, kind: str):
    """The single problem of ``kind``; fails if there is any other problem."""
    assert dict(log.counts) == {kind: 1}, log.summary()
    return log.problems[0]


def _voc_after(root: Path, **options) -> tuple[VOCDataset, ProblemLog]:
    log = _quiet()
    return VOCDataset(root, "train", cache=False, problems=log, **options), log


# --- missing, unreadable and damaged images --------------------------------------------------------


def test_missing_image_is_reported_at_index_time_and_the_others_kept(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    (root / "JPEGImages" / "img_b.jpg").unlink()
    dataset, log = _voc_after(root)
    problem = _only(log, "missing-image")
    assert problem.file.endswith("img_b.jpg") and "image skipped" in str(problem)
    assert sorted(by_stem(dataset)) == ["img_a", "img_c"] and len(dataset.records[0].boxes) == 2


def test_missing_image_without_probing_raises_badimage_on_load(tmp_path):
    json_path = write_coco(tmp_path / "coco", basic_spec())
    (tmp_path / "coco" / "train" / "img_a.jpg").unlink()
    dataset = COCODataset(json_path, probe_images=False, problems=_quiet())
    assert len(dataset) == 3  # sizes from the JSON; the file is only looked at when loaded
    with pytest.raises(BadImage) as caught:
        dataset.load_image(0)
    assert caught.value.problem.kind == "missing-image" and "img_a.jpg" in str(caught.value)
    assert dataset.load_image(1).size == (50, 70) and dataset.load_image(2).size == (40, 40)


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("PNG", "png")])
def test_truncated_image_raises_badimage_on_load_and_others_load(tmp_path, fmt, suffix):
    paths = [write_noise(tmp_path / f"{k}.{suffix}", 64, 48, fmt=fmt) for k in range(2)]
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])
    assert probe_image(paths[0]).width == 64  # the header is intact: only decoding finds the damage
    with pytest.raises(BadImage) as caught:
        load_rgb(paths[0])
    assert caught.value.problem.kind == "corrupt-image" and str(paths[0]) in str(caught.value)
    assert load_rgb(paths[1]).size == (64, 48)


def test_file_that_is_not_an_image_is_reported_at_index_time(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    (root / "JPEGImages" / "img_c.jpg").write_text("not an image")
    dataset, log = _voc_after(root)
    problem = _only(log, "unreadable-image")
    assert problem.file.endswith("img_c.jpg") and sorted(by_stem(dataset)) == ["img_a", "img_b"]


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG declaring width x height 1-bit pixels with almost no data: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bomb_refused_naming_file_and_limit(tmp_path):
    bomb = _png_header_only(tmp_path / "bomb.png", 30_000, 30_000)
    with pytest.raises(BadImage) as caught:
        load_rgb(bomb)  # default limit (PIL's 89.5 M pixels)
    assert caught.value.problem.kind == "decompression-bomb"
    assert "bomb.png" in str(caught.value) and "max_pixels=89,478,485" in str(caught.value)
    small = write_image(tmp_path / "small.jpg", 64, 48)
    with pytest.raises(BadImage, match=r"small\.jpg.*64x48 = 3,072 pixels exceeds the limit max_pixels=1,000"):
        load_rgb(small, max_pixels=1000)
    assert load_rgb(small, max_pixels=5000).size == (64, 48)


def test_decompression_bomb_limit_is_a_dataset_option(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    dataset, log = _voc_after(root, max_pixels=3200)  # img_b is 50x70 = 3500 pixels, the others smaller
    problem = _only(log, "decompression-bomb")
    assert problem.file.endswith("img_b.jpg") and "max_pixels=3,200" in problem.what
    assert sorted(by_stem(dataset)) == ["img_a", "img_c"]


# --- malformed annotation files --------------------------------------------------------------------


def test_malformed_xml_names_file_and_line_and_the_others_are_kept(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    (root / "Annotations" / "img_b.xml").write_text("<annotation>\n<object>\n<name>kiwi</name>\n</annotatio>\n")
    dataset, log = _voc_after(root)
    problem = _only(log, "malformed-xml")
    assert problem.file.endswith("img_b.xml") and problem.where == "line 4"
    assert sorted(by_stem(dataset)) == ["img_a", "img_c"] and len(by_stem(dataset)["img_a"].boxes) == 2


def test_voc_object_without_bndbox_is_dropped_and_named(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    xml = root / "Annotations" / "img_a.xml"
    xml.write_text(xml.read_text().replace("<xmin>5</xmin>", "<xmin>five</xmin>"))
    dataset, log = _voc_after(root)
    problem = _only(log, "malformed-object")
    assert str(problem).startswith(f"{xml}: object 1 'apple'")
    assert [dataset.class_names[k] for k in by_stem(dataset)["img_a"].labels] == ["pear"]  # the pear survives


def test_malformed_json_is_user_error_naming_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(UserError, match=r"bad\.json: line 2: malformed JSON"):
        build_dataset(str(path), "train")


def test_malformed_yaml_is_user_error_naming_file_and_line(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("path: .\ntrain: [images\nnames: [a]\n")
    with pytest.raises(UserError, match=r"data\.yaml: line \d+: malformed YAML"):
        build_dataset(str(path), "train")


def test_malformed_coco_annotation_is_dropped_and_named(tmp_path):
    data = coco_dict(basic_spec())
    data["annotations"][0]["bbox"] = [1, 2, "three"]
    data["annotations"].append({"id": 999, "image_id": 10})  # no bbox, no category
    dataset = COCODataset(write_coco(tmp_path / "coco", basic_spec(), data=data), problems=(log := _quiet()))
    assert log.counts == {"malformed-annotation": 2}
    assert {p.where for p in log.problems} == {"annotations[0] id 300", "annotations[3] id 999"}
    assert by_stem(dataset)["img_a"].labels.tolist() == [2] and by_stem(dataset)["img_b"].labels.tolist() == [1]


def test_malformed_label_line_names_file_and_line_and_keeps_the_other_lines(tmp_path):
    path = write_yolo(tmp_path / "yolo", basic_spec())
    label = tmp_path / "yolo" / "labels" / "train" / "img_a.txt"
    label.write_text(label.read_text() + "2 0.5 0.5\n1 0.5 x 0.2 0.2\n")
    dataset = YOLODataset.from_yaml(path, "train", problems=(log := _quiet()))
    assert log.counts == {"malformed-label-line": 2}
    assert [(p.file, p.where) for p in log.problems] == [(str(label), "line 3"), (str(label), "line 4")]
    assert by_stem(dataset)["img_a"].labels.tolist() == [0, 2] and len(dataset) == 3


# --- unknown classes -------------------------------------------------------------------------------


def test_unknown_class_id_in_yolo_names_line(tmp_path):
    path = write_yolo(tmp_path / "yolo", basic_spec())
    label = tmp_path / "yolo" / "labels" / "train" / "img_b.txt"
    label.write_text(label.read_text() + "7 0.5 0.5 0.2 0.2\n")
    dataset = YOLODataset.from_yaml(path, "train", problems=(log := _quiet()))
    problem = _only(log, "unknown-class")
    assert (problem.file, problem.where) == (str(label), "line 2") and "class id 7" in problem.what
    assert by_stem(dataset)["img_b"].labels.tolist() == [1]


def test_unknown_category_in_coco_names_annotation(tmp_path):
    data = coco_dict(basic_spec())
    data["annotations"][1]["category_id"] = 99
    dataset = COCODataset(write_coco(tmp_path / "coco", basic_spec(), data=data), problems=(log := _quiet()))
    problem = _only(log, "unknown-class")
    assert problem.where == f"annotation id {data['annotations'][1]['id']}" and "category_id 99" in problem.what
    assert by_stem(dataset)["img_a"].labels.tolist() == [0] and dataset.num_objects() == 2


def test_annotation_of_unknown_image_is_reported(tmp_path):
    data = coco_dict(basic_spec())
    data["annotations"][0]["image_id"] = 12345
    COCODataset(write_coco(tmp_path / "coco", basic_spec(), data=data), problems=(log := _quiet()))
    assert "image_id 12345" in _only(log, "unknown-image").what


# --- bad boxes -------------------------------------------------------------------------------------


def test_degenerate_box_is_dropped_and_named(tmp_path):
    spec = [SpecImage("x", 60, 60, [[10, 10, 30, 30], [40, 20, 40, 50], [5, 5, 9, 9]], [0, 1, 2])]
    root = write_voc(tmp_path / "voc", spec)
    dataset, log = _voc_after(root)
    problem = _only(log, "degenerate-box")
    assert str(problem).startswith(f"{root / 'Annotations' / 'x.xml'}: object 2 'kiwi': degenerate box")
    np.testing.assert_allclose(dataset.records[0].boxes, [[10, 10, 30, 30], [5, 5, 9, 9]])


def test_box_partly_outside_is_clipped_and_reported(tmp_path):
    data = coco_dict(basic_spec())
    data["annotations"][0]["bbox"] = [50, -10, 30, 20]  # x 50..80 on a 64-wide image, y -10..10
    dataset = COCODataset(write_coco(tmp_path / "coco", basic_spec(), data=data), problems=(log := _quiet()))
    problem = _only(log, "box-clipped")
    assert "annotation id" in problem.where and "clipped to (50, 0, 64, 10)" in problem.action
    np.testing.assert_allclose(by_stem(dataset)["img_a"].boxes[0], [50, 0, 64, 10])
    assert dataset.num_objects() == 3


def test_half_pixel_overshoot_is_clipped_silently(tmp_path):
    data = coco_dict(basic_spec())
    data["annotations"][0]["bbox"] = [0, 0, 64.4, 48]
    dataset = COCODataset(write_coco(tmp_path / "coco", basic_spec(), data=data), problems=(log := _quiet()))
    assert not log and by_stem(dataset)["img_a"].boxes[0].tolist() == [0, 0, 64, 48]


def test_box_entirely_outside_is_dropped(tmp_path):
    path = write_yolo(tmp_path / "yolo", basic_spec())
    label = tmp_path / "yolo" / "labels" / "train" / "img_c.txt"
    label.write_text("0 1.5 0.5 0.2 0.2\n")
    dataset = YOLODataset.from_yaml(path, "train", problems=(log := _quiet()))
    assert _only(log, "box-outside-image").where == "line 1" and len(by_stem(dataset)["img_c"].boxes) == 0


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_nan_and_inf_coordinates_are_dropped(tmp_path, fmt):
    spec = basic_spec()
    if fmt == "voc":
        root = write_voc(tmp_path / "voc", spec)
        xml = root / "Annotations" / "img_a.xml"
        xml.write_text(
            xml.read_text().replace("<xmin>5</xmin>", "<xmin>nan</xmin>").replace("<ymax>44</ymax>", "<ymax>inf</ymax>")
        )
        dataset, log = _voc_after(root)
        expected_where = {"object 1 'apple'", "object 2 'pear'"}
    elif fmt == "coco":
        data = coco_dict(spec)
        data["annotations"][0]["bbox"][0] = float("nan")
        data["annotations"][1]["bbox"][3] = float("inf")
        dataset = COCODataset(write_coco(tmp_path / "coco", spec, data=data), problems=(log := _quiet()))
        expected_where = {f"annotation id {a['id']}" for a in data["annotations"][:2]}
    else:
        path = write_yolo(tmp_path / "yolo", spec)
        (tmp_path / "yolo" / "labels" / "train" / "img_a.txt").write_text("0 nan 0.5 0.1 0.1\n2 0.5 0.5 inf 0.1\n")
        dataset = YOLODataset.from_yaml(path, "train", problems=(log := _quiet()))
        expected_where = {"line 1", "line 2"}
    assert log.counts == {"nonfinite-box": 2} and {p.where for p in log.problems} == expected_where
    assert "non-finite" in log.problems[0].what and log.problems[0].file.endswith((".xml", ".json", ".txt"))
    assert len(by_stem(dataset)["img_a"].boxes) == 0 and by_stem(dataset)["img_b"].labels.tolist() == [1]


def test_negative_image_is_kept_and_counted_not_a_problem(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    dataset, log = _voc_after(root)
    assert not log and log.notes["negative-image (no objects)"] == 1
    assert len(by_stem(dataset)["img_c"].boxes) == 0 and "negative-image" in log.summary()


def test_missing_yolo_label_file_is_a_negative(tmp_path):
    path = write_yolo(tmp_path / "yolo", basic_spec())
    (tmp_path / "yolo" / "labels" / "train" / "img_a.txt").unlink()
    dataset = YOLODataset.from_yaml(path, "train", problems=(log := _quiet()))
    assert not log and len(dataset) == 3 and len(by_stem(dataset)["img_a"].boxes) == 0


# --- colour modes and orientation ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA", "RGBA", "I;16", "I", "F"])
def test_modes_are_converted_to_rgb_and_counted(tmp_path, mode):
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode in ("I", "F") else "PNG")
    path = write_image(
        tmp_path / f"x.{fmt.lower()}",
        32,
        24,
        [[4, 4, 20, 20]],
        fmt=fmt,
        mode=mode if mode not in ("I;16", "I", "F") else "RGB",
    )
    if mode in ("I;16", "I", "F"):
        values = np.full((24, 32), 65535 if mode != "F" else 200, np.uint16 if mode == "I;16" else np.int32)
        array = values.astype(np.float32) if mode == "F" else values
        Image.fromarray(array, mode if mode != "I;16" else None).save(path)
    assert Image.open(path).mode.startswith(mode[0])
    log = _quiet()
    image = load_rgb(path, problems=log)
    assert image.mode == "RGB" and image.size == (32, 24)
    assert sum(log.notes.values()) == 1 and next(iter(log.notes)).startswith("converted ")
    if mode in ("I;16", "I"):
        assert image.getpixel((0, 0)) == (255, 255, 255)  # 65535 -> 255, not clipped garbage
    if mode == "F":
        assert image.getpixel((0, 0)) == (200, 200, 200)


def test_alpha_is_composited_on_black(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)  # fully transparent red: black after compositing
    rgba[0, 1] = (200, 100, 50, 255)  # opaque: unchanged
    rgba[1, 0] = (200, 100, 50, 128)  # half: about half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = load_rgb(tmp_path / "a.png")
    assert image.getpixel((0, 0)) == (0, 0, 0) and image.getpixel((1, 0)) == (200, 100, 50)
    assert np.allclose(image.getpixel((0, 1)), (100, 50, 25), atol=2)


def test_palette_with_transparency_is_composited(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.save(tmp_path / "p.png", transparency=1)  # colour 1 (red) is transparent
    log = _quiet()
    assert load_rgb(tmp_path / "p.png", problems=log).getpixel((0, 0)) == (0, 0, 0)
    assert "alpha composited on black" in next(iter(log.notes))


def _rotated_jpeg(path: Path) -> Path:
    """A 40x20 raw JPEG, left half red, right half blue, tagged EXIF orientation 6 (display rotated 90 cw)."""
    raw = np.zeros((20, 40, 3), np.uint8)
    raw[:, :20] = (255, 0, 0)
    raw[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(raw).save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied(tmp_path):
    path = _rotated_jpeg(tmp_path / "r.jpg")
    info = probe_image(path)
    assert (info.width, info.height, info.orientation, info.swapped) == (20, 40, 6, True)
    image = load_rgb(path)
    assert image.size == (20, 40)
    red, blue = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert red[0] > 200 > red[2] and blue[2] > 200 > blue[0]  # raw left (red) is now the top


def test_annotation_size_of_raw_frame_uses_oriented_size(tmp_path):
    spec = [SpecImage("r", 40, 20, [[2, 2, 18, 38]], [0])]  # size written as raw 40x20; box in the oriented frame
    root = write_voc(tmp_path / "voc", spec)
    _rotated_jpeg(root / "JPEGImages" / "r.jpg")
    dataset, log = _voc_after(root)
    record = dataset.records[0]
    assert (record.width, record.height) == (20, 40) and not log
    np.testing.assert_allclose(record.boxes, [[2, 2, 18, 38]])  # not clipped to a 40x20 frame
    assert any("pre-EXIF" in k for k in log.notes)


def test_annotation_size_disagreeing_with_image_is_reported(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    write_image(root / "JPEGImages" / "img_b.jpg", 25, 35)  # resized after annotation
    dataset, log = _voc_after(root)
    assert log.counts == {"size-mismatch": 1, "box-clipped": 1}  # its 50x70 box is clipped to 25x35
    problem = log.problems[0]
    assert "annotation says 50x70 but the image is 25x35" in problem.what and problem.file.endswith("img_b.xml")
    assert (by_stem(dataset)["img_b"].width, by_stem(dataset)["img_b"].height) == (25, 35)


def test_draft_decodes_large_jpeg_at_reduced_scale_not_below_target(tmp_path):
    path = write_image(tmp_path / "big.jpg", 1600, 1200, [[100, 100, 900, 900]])
    assert load_rgb(path).size == (1600, 1200)
    small = load_rgb(path, target_size=(300, 200))
    assert small.size == (400, 300)  # 1/4 scale: 1/8 would go below 300 wide
    assert load_rgb(path, target_size=(1000, 1000)).size == (1600, 1200)


def test_draft_target_is_in_the_oriented_frame(tmp_path):
    raw = Image.new("RGB", (1600, 800), (9, 9, 9))
    exif = Image.Exif()
    exif[0x0112] = 6
    raw.save(tmp_path / "r.jpg", exif=exif)  # oriented: 800 wide, 1600 high
    image = load_rgb(tmp_path / "r.jpg", target_size=(200, 400))
    assert image.size == (200, 400)


# --- caching ---------------------------------------------------------------------------------------


def test_index_is_cached_replays_problems_and_rebuilds_when_annotations_change(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    xml = root / "Annotations" / "img_a.xml"
    xml.write_text(xml.read_text().replace("<xmax>30</xmax>", "<xmax>3</xmax>"))  # one degenerate box
    cache = tmp_path / "c"
    first = VOCDataset(root, "train", cache_dir=cache, problems=(log1 := _quiet()))
    second = VOCDataset(root, "train", cache_dir=cache, problems=(log2 := _quiet()))
    assert (first.from_cache, second.from_cache) == (False, True) and len(list(cache.iterdir())) == 1
    assert [str(p) for p in log1.problems] == [str(p) for p in log2.problems] and log2.counts["degenerate-box"] == 1
    assert log2.notes == log1.notes
    for a, b in zip(first.records, second.records):
        assert a.image_id == b.image_id and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)
    xml.write_text(xml.read_text().replace("<xmax>3</xmax>", "<xmax>30</xmax>") + " ")  # fixed: size changes
    third = VOCDataset(root, "train", cache_dir=cache, problems=(log3 := _quiet()))
    assert not third.from_cache and not log3 and len(by_stem(third)["img_a"].boxes) == 2


def test_cache_disabled_writes_nothing_and_default_dir_is_env(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    VOCDataset(root, "train", cache=False, problems=_quiet())
    assert not (tmp_path / "cache").exists()
    VOCDataset(root, "train", problems=_quiet())
    assert [p.name[:10] for p in (tmp_path / "cache").iterdir()] == ["voc-train-"]


def test_yolo_cache_sees_label_edits(tmp_path):
    path = write_yolo(tmp_path / "yolo", basic_spec())
    YOLODataset.from_yaml(path, "train", problems=_quiet())
    (tmp_path / "yolo" / "labels" / "train" / "img_c.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    again = YOLODataset.from_yaml(path, "train", problems=_quiet())
    assert not again.from_cache and by_stem(again)["img_c"].labels.tolist() == [1]


# --- the problem log and BadImage in a training loop -----------------------------------------------


def test_problem_log_prints_one_line_each_dedups_files_and_bounds_memory():
    lines = []
    log = ProblemLog(echo=lines.append, max_kept_per_kind=2)
    for k in range(5):
        log.add("degenerate-box", "a.xml", f"object {k}", "degenerate box", "object dropped")
    log.add("corrupt-image", "x.jpg", "", "truncated", "image skipped")
    log.add("corrupt-image", "x.jpg", "", "truncated", "image skipped")  # the same image again: once
    assert log.counts == {"degenerate-box": 5, "corrupt-image": 1} and len(log.problems) == 3
    assert lines[0] == "a.xml: object 0: degenerate box -> object dropped" and len(lines) == 6
    assert "degenerate-box: 5" in log.summary() and "6 problem(s)" in log.summary()
    other = ProblemLog(echo=lines.append)
    other.absorb(log.problems, dict(log.counts), {"negative-image": 2})
    assert other.counts == log.counts and lines[-1] == "... and 3 more degenerate-box problem(s) not listed"


def test_badimage_lets_a_training_loop_skip_and_report(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec())
    data = write_noise(root / "JPEGImages" / "img_b.jpg", 50, 70).read_bytes()
    (root / "JPEGImages" / "img_b.jpg").write_bytes(data[: len(data) // 2])  # truncated pixel data
    dataset, log = _voc_after(root)
    worker_copy = pickle.loads(pickle.dumps(dataset))  # as a DataLoader worker receives it
    loaded, skipped = [], []
    for i in range(len(worker_copy)):
        try:
            loaded.append(worker_copy.load_image(i).size)
        except BadImage as error:
            log.report(error.problem)
            skipped.append(error.problem.file)
    assert loaded == [(64, 48), (40, 40)] and [Path(f).name for f in skipped] == ["img_b.jpg"]
    assert log.counts == {"corrupt-image": 1}
