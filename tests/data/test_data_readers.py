"""Readers: VOC, COCO and YOLO agree on the same data; splits, class names, format detection; real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures.datasets import (
    CLASSES,
    SpecImage,
    basic_spec,
    by_stem,
    coco_dict,
    expected_boxes,
    write_coco,
    write_image,
    write_voc,
    write_yolo,
)

from multibox.data import build_dataset
from multibox.data.coco import COCODataset
from multibox.data.formats import detect_format
from multibox.data.problems import ProblemLog
from multibox.data.voc import VOCDataset
from multibox.data.yolo import YOLODataset, label_path
from multibox.errors import UserError

FIXTURES = Path(__file__).parents[1] / "fixtures"
LABELME = Path("/usr/share/doc/labelme-examples/examples")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))


def _quiet() -> ProblemLog:
    return ProblemLog(echo=None)


def _three_formats(tmp_path: Path, spec: list[SpecImage]):
    voc = VOCDataset(write_voc(tmp_path / "voc", spec), "train", problems=_quiet())
    coco = COCODataset(write_coco(tmp_path / "coco", spec), problems=_quiet())
    yolo = YOLODataset.from_yaml(write_yolo(tmp_path / "yolo", spec), "train", problems=_quiet())
    return voc, coco, yolo


def test_same_data_as_voc_coco_yolo_gives_identical_records(tmp_path):
    spec = basic_spec()
    datasets = _three_formats(tmp_path, spec)
    for dataset in datasets:
        assert dataset.class_names == CLASSES, dataset.name
        records = by_stem(dataset)
        assert sorted(records) == [s.name for s in spec], dataset.name
        for image in spec:
            record = records[image.name]
            assert (record.width, record.height) == (image.width, image.height), dataset.name
            np.testing.assert_allclose(record.boxes, expected_boxes(image), atol=1e-3, err_msg=dataset.name)
            assert record.labels.tolist() == image.labels, dataset.name
            assert record.ignore.tolist() == image.ignore, dataset.name
        assert not dataset.problems, dataset.problems.summary()
        assert dataset.problems.notes["negative-image (no objects)"] == 1


def test_voc_difficult_and_coco_crowd_both_become_ignore(tmp_path):
    spec = [SpecImage("x", 60, 60, [[1, 1, 20, 20], [30, 30, 59, 59]], [0, 1], [True, False])]
    voc = VOCDataset(write_voc(tmp_path / "voc", spec), "train", problems=_quiet())
    coco = COCODataset(write_coco(tmp_path / "coco", spec), problems=_quiet())
    for dataset in (voc, coco):
        assert dataset.records[0].ignore.tolist() == [True, False], dataset.name
        assert dataset.num_objects() == 1 and dataset.num_objects(include_ignored=True) == 2


def test_voc_split_file_selects_images_and_unknown_split_is_user_error(tmp_path):
    root = write_voc(tmp_path / "voc", basic_spec(), split="trainval")
    (root / "ImageSets" / "Main" / "val.txt").write_text("img_b\n")
    assert [r.image_id for r in VOCDataset(root, "val", problems=_quiet()).records] == ["img_b"]
    assert len(VOCDataset(root, "all", problems=_quiet())) == 3
    with pytest.raises(UserError, match=r"ImageSets/Main/test\.txt not found.*trainval"):
        VOCDataset(root, "test")
    with pytest.raises(UserError, match="does not exist"):
        VOCDataset(tmp_path / "nowhere", "train")


def test_voc_class_names_voc20_when_all_known_else_sorted_and_names_option(tmp_path):
    spec = [SpecImage("x", 50, 50, [[1, 1, 20, 20]], [0])]
    root = write_voc(tmp_path / "voc", spec)
    xml = root / "Annotations" / "x.xml"
    xml.write_text(xml.read_text().replace("apple", "dog"))
    voc20 = VOCDataset(root, "train", cache=False, problems=_quiet())
    assert len(voc20.class_names) == 20 and voc20.class_names[voc20.records[0].labels[0]] == "dog"
    log = _quiet()
    named = VOCDataset(root, "train", names=["cat", "person"], cache=False, problems=log)
    assert named.class_names == ["cat", "person"] and len(named.records[0].boxes) == 0
    assert log.counts["unknown-class"] == 1 and "x.xml: object 1 'dog'" in str(log.problems[0])


def test_voc_devkit_parent_folder_is_accepted(tmp_path):
    write_voc(tmp_path / "VOCdevkit" / "VOC2012", basic_spec())
    dataset = build_dataset(str(tmp_path / "VOCdevkit"), "train", problems=_quiet())
    assert dataset.name.startswith("voc:") and len(dataset) == 3


def test_coco_category_ids_map_to_contiguous_labels_in_id_order(tmp_path):
    spec = basic_spec()
    data = coco_dict(spec)
    data["categories"] = data["categories"][::-1]  # file order must not matter, id order does
    json_path = write_coco(tmp_path / "coco", spec, data=data)
    dataset = COCODataset(json_path, problems=_quiet())
    assert dataset.class_names == CLASSES
    assert by_stem(dataset)["img_a"].labels.tolist() == [0, 2]
    assert [r.image_id for r in dataset.records] == ["10", "20", "30"]


def test_coco_names_option_matches_categories_by_name(tmp_path):
    log = _quiet()
    dataset = COCODataset(write_coco(tmp_path / "coco", basic_spec()), names=["pear", "apple"], problems=log)
    assert by_stem(dataset)["img_a"].labels.tolist() == [1, 0]
    assert log.counts["unknown-class"] == 1  # the kiwi, whose category is not in names


def test_coco_image_folder_is_found_next_to_the_json(tmp_path):
    json_path = write_coco(tmp_path / "coco", basic_spec(), split="val2017")
    dataset = COCODataset(json_path, problems=_quiet())
    assert Path(dataset.records[0].path).parent == tmp_path / "coco" / "val2017"
    shutil.rmtree(tmp_path / "coco" / "val2017")
    with pytest.raises(UserError, match="cannot find its images"):
        COCODataset(json_path, problems=_quiet())


def test_yolo_names_dict_txt_list_split_and_polygon_lines(tmp_path):
    root = tmp_path / "yolo"
    write_image(root / "images" / "a.jpg", 100, 50)
    (root / "labels").mkdir()
    # A polygon (class x1 y1 x2 y2 x3 y3) becomes its bounding box.
    (root / "labels" / "a.txt").write_text("1 0.1 0.2 0.5 0.2 0.3 0.8\n")
    (root / "list.txt").write_text("./images/a.jpg\n")
    (root / "d.yaml").write_text(yaml.safe_dump({"train": "list.txt", "names": {0: "x", 1: "y"}}))
    dataset = YOLODataset.from_yaml(root / "d.yaml", "train", problems=_quiet())
    assert dataset.class_names == ["x", "y"]
    np.testing.assert_allclose(dataset.records[0].boxes, [[10, 10, 50, 40]], atol=1e-4)
    assert dataset.records[0].labels.tolist() == [1]


def test_yolo_label_path_rule():
    assert label_path(Path("/d/images/train/images/x.jpg")) == Path("/d/images/train/labels/x.txt")
    assert label_path(Path("/d/pics/x.png")) == Path("/d/pics/x.txt")


def test_yolo_missing_split_and_names_are_user_errors(tmp_path):
    path = write_yolo(tmp_path / "yolo", basic_spec())
    with pytest.raises(UserError, match="no split 'val'"):
        YOLODataset.from_yaml(path, "val")
    path.write_text(yaml.safe_dump({"path": ".", "train": "images/train", "names": {0: "a", 2: "c"}}))
    with pytest.raises(UserError, match="0..1"):
        YOLODataset.from_yaml(path, "train")


def test_detect_format_of_folders_files_and_yaml(tmp_path):
    spec = basic_spec()
    assert detect_format(write_voc(tmp_path / "voc", spec)) == "voc"
    write_coco(tmp_path / "coco", spec, split="train2017")
    assert detect_format(tmp_path / "coco") == "coco"
    assert detect_format(tmp_path / "coco" / "annotations" / "instances_train2017.json") == "coco"
    write_yolo(tmp_path / "yolo", spec)
    assert detect_format(tmp_path / "yolo") == "yolo"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a VOC, COCO or YOLO"):
        detect_format(tmp_path / "empty")
    with pytest.raises(UserError, match="no such file"):
        build_dataset(str(tmp_path / "missing"), "train")
    # "--split train" finds instances_train2017.json in a COCO folder.
    assert len(build_dataset(str(tmp_path / "coco"), "train", problems=_quiet())) == 3


def test_our_dataset_yaml_for_each_format(tmp_path):
    spec = basic_spec()
    write_voc(tmp_path / "voc", spec, split="trainval")
    write_coco(tmp_path / "coco", spec, split="val")
    write_yolo(tmp_path / "yolo", spec)
    files = {
        "voc": {"format": "voc", "root": "voc", "splits": {"train": "trainval"}},
        "coco": {
            "format": "coco",
            "root": "coco",
            "splits": {"val": {"annotations": "annotations/instances_val.json", "images": "val"}},
        },
        "yolo": {"format": "yolo", "root": "yolo", "splits": {"train": "images/train"}, "names": CLASSES},
    }
    split = {"voc": "train", "coco": "val", "yolo": "train"}
    for fmt, content in files.items():
        path = tmp_path / f"{fmt}.yaml"
        path.write_text(yaml.safe_dump(content))
        dataset = build_dataset(str(path), split[fmt], problems=_quiet())
        assert dataset.format == fmt and len(dataset) == 3 and dataset.class_names == CLASSES
    with pytest.raises(UserError, match="no split 'test'"):
        build_dataset(str(tmp_path / "coco.yaml"), "test")


def test_missing_coco_json_named_in_yaml_is_user_error(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"format": "coco", "splits": {"train": "nope.json"}}))
    with pytest.raises(UserError, match="nope.json not found"):
        build_dataset(str(path), "train")


# --- real files ------------------------------------------------------------------------------------

needs_labelme = pytest.mark.skipif(
    not LABELME.is_dir(), reason="Debian package labelme-examples not installed (apt-get install labelme-examples)"
)


@needs_labelme
def test_labelme_examples_voc_export():
    root = LABELME / "bbox_detection" / "data_dataset_voc"  # no ImageSets: split "all"
    dataset = build_dataset(str(root), "all", problems=_quiet())
    records = {r.image_id: r for r in dataset.records}
    assert sorted(records) == ["2011_000003", "2011_000006", "2011_000025"]
    first = records["2011_000003"]
    assert (first.width, first.height) == (500, 338)
    # XML xmin=191.0 ymin=107.369 xmax=313.0 ymax=329.369, VOC 1-based -> x1 = xmin - 1.
    np.testing.assert_allclose(first.boxes[0], [190.0, 106.369, 313.0, 329.369], atol=1e-3)
    assert [dataset.class_names[k] for k in first.labels] == ["person", "person"]
    assert dataset.num_objects() == 9 and not dataset.problems
    assert dataset.load_image(0).size == (500, 338)


@needs_labelme
def test_labelme_examples_coco_export():
    path = LABELME / "instance_segmentation" / "data_dataset_coco" / "annotations.json"
    dataset = build_dataset(str(path), "train", problems=_quiet())
    assert len(dataset) == 3 and dataset.num_objects() == 12 and not dataset.problems
    # labelme2coco's category 0 "_background_" has no annotations: not a class (issue 11 item 9).
    assert "_background_" not in dataset.class_names and dataset.class_names[14] == "person"
    assert any("_background_" in note for note in dataset.problems.notes)
    first = dataset.records[0]
    np.testing.assert_allclose(first.boxes[0], [191, 107, 191 + 123, 107 + 221])
    assert dataset.load_image(0).size == (first.width, first.height)


def _quokka_box() -> list[float]:
    data = json.loads((FIXTURES / "imgaug" / "quokka_annotations.json").read_text())
    b = data["bounding_boxes"][0]
    return [b["x1"], b["y1"], b["x2"], b["y2"]]


def test_quokka_photo_as_coco_and_yolo(tmp_path):
    box = _quokka_box()
    shutil.copy(FIXTURES / "imgaug" / "quokka.jpg", tmp_path / "quokka.jpg")
    data = {
        "images": [{"id": 1, "file_name": "quokka.jpg", "width": 960, "height": 643}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
            }
        ],
        "categories": [{"id": 1, "name": "animal"}],
    }
    (tmp_path / "q.json").write_text(json.dumps(data))
    coco = build_dataset(str(tmp_path / "q.json"), "train", problems=_quiet())
    (tmp_path / "y" / "images").mkdir(parents=True)
    shutil.copy(tmp_path / "quokka.jpg", tmp_path / "y" / "images" / "quokka.jpg")
    (tmp_path / "y" / "labels").mkdir()
    cx, cy, w, h = (
        (box[0] + box[2]) / 2 / 960,
        (box[1] + box[3]) / 2 / 643,
        (box[2] - box[0]) / 960,
        (box[3] - box[1]) / 643,
    )
    (tmp_path / "y" / "labels" / "quokka.txt").write_text(f"0 {cx} {cy} {w} {h}\n")
    (tmp_path / "y" / "data.yaml").write_text(yaml.safe_dump({"train": "images", "names": ["animal"]}))
    yolo = build_dataset(str(tmp_path / "y"), "train", problems=_quiet())
    for dataset in (coco, yolo):
        assert (dataset.records[0].width, dataset.records[0].height) == (960, 643)
        np.testing.assert_allclose(dataset.records[0].boxes[0], box, atol=1e-3)
        assert dataset.load_image(0).size == (960, 643) and not dataset.problems


def test_coco_reader_agrees_with_pycocotools(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco", reason="pycocotools not installed").COCO
    spec = basic_spec() + [SpecImage("img_d", 80, 60, [[0, 0, 10, 10], [5, 5, 70, 50]], [2, 2], [True, False])]
    json_path = write_coco(tmp_path / "coco", spec)
    reference = coco_api(str(json_path))
    dataset = COCODataset(json_path, problems=_quiet())
    category_ids = sorted(reference.getCatIds())
    for record in dataset.records:
        anns = reference.loadAnns(reference.getAnnIds(imgIds=[int(record.image_id)]))
        xyxy = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        np.testing.assert_allclose(record.boxes, np.asarray(xyxy, np.float32).reshape(-1, 4))
        assert record.labels.tolist() == [category_ids.index(a["category_id"]) for a in anns]
        assert record.ignore.tolist() == [bool(a["iscrowd"]) for a in anns]
