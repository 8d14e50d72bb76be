"""The second corpus of reader faults (issue 12) and issue 11's reader items: each case is reproduced on a
tiny dataset, and the message names the file (line, object) and the problem; `multibox data check` exits
2 for an unusable input, 1 with the problem listed otherwise, never a traceback; the good data beside the
bad is still used."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from fixtures.datasets import CLASSES, basic_spec, coco_dict, write_coco, write_image, write_voc, write_yolo

from multibox.cli import main
from multibox.data import build_dataset
from multibox.data.coco import COCODataset
from multibox.data.formats import detect_format, json_splits
from multibox.data.problems import Problem, ProblemLog
from multibox.errors import UserError
from multibox.evaluation.detection_files import read_detections, write_detections
from multibox.jobs.data import check_main

LABELME = Path("/usr/share/doc/labelme-examples/examples")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))


def _open(spec, split: str = "train", **options):
    log = ProblemLog(echo=None)
    return build_dataset(str(spec), split, problems=log, cache=False, **options), log


def _check(capsys, data, split: str = "train") -> tuple[int, str]:
    """`multibox data check DATA --split SPLIT` through the CLI: (exit code, stdout + stderr)."""
    code = main(["data", "check", str(data), "--split", split])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out + captured.err


def _error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text
    return lines[0]


# --- COCO ----------------------------------------------------------------------------------------------


def _coco(tmp_path: Path, mutate) -> Path:
    data = coco_dict(basic_spec())
    mutate(data)
    return write_coco(tmp_path / "coco", basic_spec(), data=data)


@pytest.mark.parametrize("value,kind", [({"0": {}}, "object"), (5, "number"), ("x", "string")])
def test_coco_annotations_not_a_list_is_a_one_line_error(tmp_path, capsys, value, kind):
    path = _coco(tmp_path, lambda d: d.__setitem__("annotations", value))
    code, text = _check(capsys, tmp_path / "coco")
    assert code == 2
    assert _error_line(text) == f"error: {path}: 'annotations' must be a list of objects, got a JSON {kind}"


def test_coco_unhashable_category_id_is_reported_and_the_other_categories_kept(tmp_path, capsys):
    path = _coco(tmp_path, lambda d: d["categories"][0].__setitem__("id", [1]))
    dataset, log = _open(path)
    assert dataset.class_names == CLASSES[1:]  # apple's category is unusable; kiwi and pear stay
    assert dataset.num_objects() == 2 and len(dataset) == 3
    bad = [p for p in log.problems if p.kind == "malformed-category"]
    assert len(bad) == 1 and bad[0].file == str(path) and bad[0].where == "categories[0]"
    assert "needs an integer or text 'id'" in bad[0].what
    # apple's one annotation names a category that no longer exists: reported, not a crash
    assert [p.where for p in log.problems if p.kind == "unknown-class"] == ["annotation id 300"]
    code, text = _check(capsys, tmp_path / "coco")
    assert code == 1 and f"{path}: categories[0]: category" in text


def test_coco_every_category_id_unhashable_gives_no_traceback(tmp_path, capsys):
    _coco(tmp_path, lambda d: [c.__setitem__("id", [c["id"]]) for c in d["categories"]])
    dataset, log = _open(tmp_path / "coco")
    assert dataset.class_names == [] and log.counts["malformed-category"] == 3
    assert _check(capsys, tmp_path / "coco")[0] == 1  # images still readable (all negatives), problems listed


@pytest.mark.parametrize("bbox", ["1234", "10,10,5,5", ["1", "2", "3", "4"], [1, 2, 3], [True, 2, 3, 4]])
def test_coco_bbox_that_is_not_four_numbers_is_reported_and_the_rest_kept(tmp_path, bbox):
    path = _coco(tmp_path, lambda d: d["annotations"][0].__setitem__("bbox", bbox))
    dataset, log = _open(path)
    assert dataset.num_objects() == 2  # before: "1234" read as the box (1, 2, 3, 4)
    problem = log.problems[0]
    assert dict(log.counts) == {"malformed-annotation": 1}
    assert (problem.file, problem.where) == (str(path), "annotations[0] id 300")
    assert "is not a list [x, y, w, h] of numbers" in problem.what and problem.action == "object dropped"


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"images": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001])
def test_coco_deeply_nested_json_is_a_one_line_error(tmp_path, capsys, text):
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(UserError, match="nested too deeply"):
        COCODataset(path, cache=False, problems=ProblemLog(echo=None))
    code, out = _check(capsys, path)
    assert code == 2 and _error_line(out) == f"error: {path}: JSON nested too deeply to be a COCO instances file"


def test_a_coco_json_given_a_split_it_cannot_honour_is_an_error(tmp_path, capsys):
    path = write_coco(tmp_path / "coco", basic_spec(), split="val2017")
    with pytest.raises(UserError, match=r"one COCO file is one split, 'val' \(from its name; also instances_val2017, "
                       r"val2017\), not 'train'; for several splits use a dataset YAML"):
        build_dataset(str(path), "train", problems=ProblemLog(echo=None))
    for split in ("val", "val2017", "instances_val2017"):  # what the name says
        assert len(build_dataset(str(path), split, problems=ProblemLog(echo=None))) == 3
    code, text = _check(capsys, path, "test")
    assert code == 2 and _error_line(text).startswith(f"error: {path}: one COCO file is one split, 'val'")
    # A name that names no split is the one split there is: train (the default).
    plain = tmp_path / "coco" / "annotations" / "mine.json"
    shutil.copy(path, plain)
    assert json_splits(plain) == {"mine", "train", "all"}
    assert len(build_dataset(str(plain), "train", problems=ProblemLog(echo=None), images=tmp_path / "coco" / "val2017")) == 3
    with pytest.raises(UserError, match=r"is one split, 'train' \(its name names no split\), not 'val'"):
        build_dataset(str(plain), "val", problems=ProblemLog(echo=None))


def _labelme_coco(root: Path, file_names: str) -> Path:
    """labelme2coco's layout: ROOT/annotations.json, images in ROOT/JPEGImages (or beside the JSON)."""
    data = coco_dict(basic_spec(), image_ids=[0, 1, 2])
    data["categories"].insert(0, {"id": 0, "name": "_background_", "supercategory": None})
    folder = root if file_names == "beside" else root / "JPEGImages"
    for image, spec in zip(data["images"], basic_spec()):
        write_image(folder / image["file_name"], spec.width, spec.height, spec.boxes)
        if file_names == "prefixed":
            image["file_name"] = f"JPEGImages/{image['file_name']}"
    (root / "annotations.json").write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("file_names", ["prefixed", "plain", "beside"])
def test_labelme2coco_folder_is_recognised(tmp_path, capsys, file_names):
    root = _labelme_coco(tmp_path / "labelme", file_names)
    assert detect_format(root) == "coco"
    dataset, log = _open(root)
    assert len(dataset) == 3 and dataset.num_objects() == 3 and not log
    assert dataset.class_names == CLASSES  # "_background_" has no annotation: no class
    assert any("_background_" in note for note in log.notes)
    code, text = _check(capsys, root)
    assert code == 0 and "3 images (1 without objects), 3 objects (0 ignored), 3 classes" in text
    with pytest.raises(UserError, match="not 'val'"):  # one file, one split
        build_dataset(str(root), "val", problems=ProblemLog(echo=None))


@pytest.mark.skipif(not LABELME.is_dir(), reason="Debian package labelme-examples not installed")
def test_labelme_examples_coco_output_folder_is_recognised(tmp_path, capsys):
    folder = LABELME / "instance_segmentation" / "data_dataset_coco"
    dataset, log = _open(folder)
    assert len(dataset) == 3 and dataset.num_objects() == 12 and not log
    assert "_background_" not in dataset.class_names and len(dataset.class_names) == 20
    code, text = _check(capsys, folder)
    assert code == 0 and "20 classes" in text


def test_background_category_with_annotations_is_a_class(tmp_path):
    def mutate(d):
        d["categories"][0]["name"] = "background"  # id 1, used by an annotation: a real class here
    dataset, _ = _open(_coco(tmp_path, mutate))
    assert dataset.class_names == ["background", "kiwi", "pear"] and dataset.num_objects() == 3


def test_not_a_dataset_folder_lists_the_layouts_it_looked_for(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    write_image(tmp_path / "photos" / "a.jpg", 20, 20)
    code, text = _check(capsys, tmp_path / "photos")
    line = _error_line(text)
    assert code == 2 and line.startswith(f"error: {tmp_path / 'photos'}: not a VOC, COCO or YOLO dataset folder")
    for layout in ("Annotations/", "annotations/instances_<split>.json", "annotations.json", "data.yaml"):
        assert layout in line


# --- YOLO ----------------------------------------------------------------------------------------------


def test_yolo_labels_with_a_utf8_bom_are_read(tmp_path, capsys):
    data_yaml = write_yolo(tmp_path / "yolo", basic_spec())
    for label in (tmp_path / "yolo" / "labels" / "train").glob("*.txt"):
        label.write_bytes(b"\xef\xbb\xbf" + label.read_bytes())
    dataset, log = _open(data_yaml)
    assert dataset.num_objects() == 3 and not log  # before: line 1 of each file "non-numeric field"
    assert _check(capsys, tmp_path / "yolo")[0] == 0


def test_yolo_image_list_with_a_bom_is_read(tmp_path):
    write_yolo(tmp_path / "yolo", basic_spec())
    names = "".join(f"./images/train/{s.name}.jpg\n" for s in basic_spec())
    (tmp_path / "yolo" / "train.txt").write_bytes(b"\xef\xbb\xbf" + names.encode())
    (tmp_path / "yolo" / "data.yaml").write_text(yaml.safe_dump({"train": "train.txt", "names": CLASSES}))
    dataset, log = _open(tmp_path / "yolo")
    assert len(dataset) == 3 and dataset.num_objects() == 3 and not log


def test_yolo_without_any_label_file_is_an_error_naming_where_it_looked(tmp_path, capsys):
    data_yaml = write_yolo(tmp_path / "yolo", basic_spec())
    shutil.rmtree(tmp_path / "yolo" / "labels")
    code, text = _check(capsys, tmp_path / "yolo")
    line = _error_line(text)  # before: 3 images, 0 objects, "usable"
    assert code == 2 and line.startswith(f"error: {data_yaml}: no label file for any of the 3 image(s)")
    assert str(tmp_path / "yolo" / "labels" / "train" / "img_a.txt") in line


def test_yolo_missing_labels_folder_of_one_image_folder_is_reported(tmp_path, capsys):
    root = tmp_path / "yolo"
    write_yolo(root, basic_spec())
    write_image(root / "images" / "extra" / "more.jpg", 30, 30)  # labels/extra/ does not exist
    (root / "data.yaml").write_text(yaml.safe_dump({"train": ["images/train", "images/extra"], "names": CLASSES}))
    dataset, log = _open(root)
    assert len(dataset) == 4 and dataset.num_objects() == 3
    problem = log.problems[0]
    assert dict(log.counts) == {"missing-labels-folder": 1}
    assert problem.file == str(root / "labels" / "extra") and "labels folder not found (1 image(s)" in problem.what
    code, text = _check(capsys, root)
    assert code == 1 and f"{root / 'labels' / 'extra'}: labels folder not found" in text


def test_yolo_two_images_sharing_one_label_file_are_reported(tmp_path, capsys):
    root = tmp_path / "yolo"
    write_yolo(root, basic_spec())
    write_image(root / "images" / "train" / "img_a.png", 64, 48, fmt="PNG")
    dataset, log = _open(root)
    assert len(dataset) == 3 and dataset.num_objects() == 3  # before: 4 images, img_a's boxes twice
    assert [Path(r.path).name for r in dataset.records if r.image_id.endswith("img_a")] == ["img_a.jpg"]
    problem = log.problems[0]
    assert dict(log.counts) == {"shared-label-file": 1}
    assert problem.file == str(root / "labels" / "train" / "img_a.txt")
    assert problem.what == "label file shared by img_a.jpg and img_a.png"
    code, text = _check(capsys, root)
    assert code == 1 and "img_a.png skipped" in text


def test_yolo_negatives_without_label_files_share_nothing(tmp_path):
    root = tmp_path / "yolo"
    write_yolo(root, basic_spec())
    (root / "labels" / "train" / "img_c.txt").unlink()  # img_c: a negative, no label file
    write_image(root / "images" / "train" / "img_c.png", 40, 40, fmt="PNG")
    dataset, log = _open(root)
    assert len(dataset) == 4 and dataset.num_objects() == 3 and not log


def test_yolo_list_of_missing_images_reports_the_images_not_the_labels(tmp_path):
    root = tmp_path / "yolo"
    write_yolo(root, basic_spec())
    (root / "list.txt").write_text("./images/train/gone1.jpg\n./images/train/gone2.jpg\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "list.txt", "names": CLASSES}))
    dataset, log = _open(root)
    assert len(dataset) == 0 and log.total == 2 and all("gone" in p.file for p in log.problems)


def test_yolo_file_name_that_is_not_utf8_breaks_nothing(tmp_path):
    root = tmp_path / "yolo"
    write_yolo(root, basic_spec())
    image_dir, label_dir = os.fsencode(root / "images" / "train"), os.fsencode(root / "labels" / "train")
    os.rename(image_dir + b"/img_a.jpg", image_dir + b"/caf\xe9.jpg")  # Latin-1 bytes: not UTF-8
    os.rename(label_dir + b"/img_a.txt", label_dir + b"/caf\xe9.txt")
    with open(label_dir + b"/caf\xe9.txt", "ab") as f:
        f.write(b"7 0.5 0.5 0.1 0.1\n")  # an unknown class: a problem line naming the file
    for cached in (False, True, True):  # fresh, then stored in and read from the index cache
        log = ProblemLog(echo=None)
        dataset = build_dataset(str(root), "train", problems=log, cache=True)
        assert dataset.from_cache is cached
        assert len(dataset) == 3 and dataset.num_objects() == 3
        assert dataset.load_image(0).size == (64, 48)  # caf\xe9.jpg sorts first
        assert dict(log.counts) == {"unknown-class": 1}
    line = str(log.problems[0])
    assert line.endswith("caf\\xe9.txt: line 3: class id 7 is not in 0..2 -> object dropped")
    line.encode("utf-8")  # printable on a strict UTF-8 stream
    strict = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    assert check_main(str(root), "train", out=strict) == 1
    strict.flush()
    assert b"caf\\xe9.txt: line 3" in strict.buffer.getvalue()
    # detections.json keeps the name (a JSON escape) and matches it again by path
    detections = [{"boxes": torch.tensor([[1.0, 2.0, 9.0, 9.0]]), "scores": torch.tensor([0.5])}] * len(dataset)
    out = write_detections(tmp_path / "detections.json", dataset, detections)
    entries = json.loads(out.read_text())
    assert entries[0]["path"].endswith("caf\udce9.jpg")
    for entry in entries:
        del entry["image_id"]  # match by path alone
    out.write_text(json.dumps(entries))
    assert read_detections(out, dataset).unmatched == 0


def test_problem_lines_are_printable_whatever_the_file_name():
    problem = Problem("x", "caf\udce9.xml", "object 1", "bad", "dropped")
    assert str(problem) == "caf\\xe9.xml: object 1: bad -> dropped"
    assert str(Problem("x", "a\ud800.xml", "", "bad", "dropped")).encode("utf-8")


# --- VOC -----------------------------------------------------------------------------------------------


def _voc(tmp_path: Path) -> Path:
    return write_voc(tmp_path / "voc", basic_spec())


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    "value,difficult", [("true", True), ("1.0", True), ("TRUE", True), ("", False), ("0.0", False), ("false", False)]
)
def test_voc_difficult_written_as_words_numbers_or_empty(tmp_path, value, difficult):
    root = _voc(tmp_path)
    _edit(root / "Annotations" / "img_a.xml", "<difficult>0</difficult>", f"<difficult>{value}</difficult>")
    dataset, log = _open(root)
    record = next(r for r in dataset.records if r.image_id == "img_a")
    assert record.ignore.tolist() == [difficult, False] and not log  # before: "0.0" and "false" were difficult


def test_voc_difficult_that_is_no_flag_is_reported_and_the_object_kept(tmp_path):
    root = _voc(tmp_path)
    xml = root / "Annotations" / "img_a.xml"
    _edit(xml, "<difficult>0</difficult>", "<difficult>maybe</difficult>")
    dataset, log = _open(root)
    assert dataset.num_objects() == 3
    problem = log.problems[0]
    assert dict(log.counts) == {"malformed-object": 1}
    assert str(problem) == f"{xml}: object 1 'apple': <difficult> 'maybe' is not 0 or 1 -> read as not difficult"


@pytest.mark.parametrize("kind", ["folder", "symlink loop"])
def test_voc_annotation_path_that_cannot_be_read_is_reported_and_the_rest_kept(tmp_path, capsys, kind):
    root = _voc(tmp_path)
    xml = root / "Annotations" / "img_a.xml"
    xml.unlink()
    if kind == "folder":
        xml.mkdir()
    else:
        os.symlink(xml.name, xml)  # points at itself
    dataset, log = _open(root)
    assert sorted(r.image_id for r in dataset.records) == ["img_b", "img_c"] and dataset.num_objects() == 1
    problem = log.problems[0]
    assert dict(log.counts) == {"unreadable-annotation": 1}
    assert problem.file == str(xml) and problem.what.startswith("cannot read the annotation file")
    code, text = _check(capsys, root)
    assert code == 1 and f"{xml}: cannot read the annotation file" in text
    dataset, log = _open(root, "all")  # the folder/loop is found by the *.xml listing too
    assert len(dataset) == 2 and dict(log.counts) == {"unreadable-annotation": 1}


def test_voc_duplicate_ids_in_a_split_file_are_reported_and_counted_once(tmp_path, capsys):
    root = _voc(tmp_path)
    split = root / "ImageSets" / "Main" / "train.txt"
    split.write_text("img_a\nimg_b\nimg_a\nimg_c\nimg_b 1\n")
    dataset, log = _open(root)
    assert [r.image_id for r in dataset.records] == ["img_a", "img_b", "img_c"]
    assert dataset.num_objects() == 3  # before: 4 records, img_a's objects twice
    assert [(p.file, p.where) for p in log.problems] == [(str(split), "line 3"), (str(split), "line 5")]
    assert log.problems[0].what == "image id 'img_a' listed again" and log.problems[0].action == "counted once"
    code, text = _check(capsys, root)
    assert code == 1 and "3 images" in text and f"{split}: line 3: image id 'img_a' listed again" in text


def test_voc_ids_with_spaces(tmp_path):
    root = _voc(tmp_path)
    for folder, suffix in (("Annotations", ".xml"), ("JPEGImages", ".jpg")):
        (root / folder / f"img_a{suffix}").rename(root / folder / f"img a{suffix}")
    _edit(root / "Annotations" / "img a.xml", "img_a.jpg", "img a.jpg")
    (root / "ImageSets" / "Main" / "train.txt").write_text("img a\nimg_b\nimg_c -1\n")
    dataset, log = _open(root)
    assert [r.image_id for r in dataset.records] == ["img a", "img_b", "img_c"] and not log
    assert dataset.num_objects() == 3  # before: "img a" read as "img", reported missing


def test_voc_xml_with_a_default_namespace_is_read(tmp_path):
    root = _voc(tmp_path)
    _edit(root / "Annotations" / "img_a.xml", "<annotation>", '<annotation xmlns="http://example.org/voc">')
    _edit(root / "Annotations" / "img_b.xml", "<annotation>", '<v:annotation xmlns:v="urn:v">')
    xml_b = root / "Annotations" / "img_b.xml"
    xml_b.write_text(xml_b.read_text().replace("</annotation>", "</v:annotation>"))
    dataset, log = _open(root, probe_images=False)  # the sizes must come from the XML too
    assert dataset.num_objects() == 3 and not log  # before: img_a's two objects silently lost
    record = next(r for r in dataset.records if r.image_id == "img_a")
    assert (record.width, record.height) == (64, 48) and record.labels.tolist() == [0, 2]


def test_voc_reader_keeps_refusing_xml_entities(tmp_path):
    """Entity expansion ("billion laughs") and external entities: the bundled expat refuses or ignores
    them; a test keeps it so (issue 12)."""
    root = _voc(tmp_path)
    bomb = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx">' + "".join(
        f'<!ENTITY x{k} "{("&x" + (str(k - 1) if k > 1 else "") + ";") * 10}">' for k in range(1, 9)
    ) + "]><annotation><filename>&x8;</filename></annotation>"
    (root / "Annotations" / "img_a.xml").write_text(bomb)
    secret = tmp_path / "secret.txt"
    secret.write_text("apple")
    external = (f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file://{secret}">]>'
                "<annotation><object><name>&e;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
                "<ymax>9</ymax></bndbox></object></annotation>")
    (root / "Annotations" / "img_b.xml").write_text(external)
    dataset, log = _open(root)
    assert [r.image_id for r in dataset.records] == ["img_c"]  # neither entity was expanded or read
    assert [(p.kind, Path(p.file).name) for p in log.problems] == [("malformed-xml", "img_a.xml"),
                                                                   ("malformed-xml", "img_b.xml")]
    assert "apple" not in " ".join(map(str, log.problems))


def test_voc_split_file_that_is_a_folder_is_not_listed_as_a_split(tmp_path):
    root = _voc(tmp_path)
    split = root / "ImageSets" / "Main" / "train.txt"
    split.unlink()
    split.mkdir()
    with pytest.raises(UserError, match=r"train.txt not found \(splits here: all\)"):
        _open(root)


@pytest.mark.parametrize("options,message", [
    ([1], "'options' must be a mapping (e.g. probe_images: false)"),
    ({"bogus": 1}, "options.bogus: unknown reader option (known: probe_images, cache, max_pixels)"),
    ({"max_pixels": "big"}, "options.max_pixels: expected a positive integer, got 'big'"),
    ({"probe_images": "no"}, "options.probe_images: expected true or false, got 'no'"),
])
def test_dataset_yaml_options_of_the_wrong_kind(tmp_path, capsys, options, message):
    _voc(tmp_path)
    path = tmp_path / "voc.yaml"
    path.write_text(yaml.safe_dump({"format": "voc", "root": "voc", "options": options}))
    code, text = _check(capsys, path)
    assert code == 2 and _error_line(text) == f"error: {path}: {message}"
    path.write_text(yaml.safe_dump({"format": "voc", "root": "voc", "options": {"probe_images": False}}))
    assert _check(capsys, path)[0] == 0
