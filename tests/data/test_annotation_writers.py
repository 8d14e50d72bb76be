"""Detections -> VOC / COCO / YOLO / Label Studio files -> our readers (and `multibox data check`) read back
the same boxes (to the pixel) and class names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multibox.cli import main
from multibox.data.annotation_writers import make_writers, parse_formats
from multibox.data.formats import open_dataset
from multibox.errors import UserError

W, H = 64, 48
BOXES = [[3.0, 4.0, 30.0, 40.0], [20.4, 10.6, 63.0, 47.0]]


def _photos(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for k in range(2):
        path = folder / f"p{k}.jpg"
        Image.new("RGB", (W, H), (40 * k, 90, 120)).save(path)
        paths.append(path)
    return paths


def _entry(labels: list[str] | None = None) -> dict:
    entry = {"width": W, "height": H, "boxes": BOXES, "scores": [0.91, 0.42]}
    if labels:
        entry |= {"labels": labels, "label_ids": [["cat", "dog"].index(n) for n in labels], "label_scores": [0.9, 0.8]}
    return entry


def _write(tmp_path: Path, formats: list[str], names: list[str], labels=None, save_txt=False) -> Path:
    out = tmp_path / "out"
    writers = make_writers(formats, save_txt, False, out, names, "run1")
    for path in _photos(tmp_path):
        for writer in writers:
            writer.add(_entry(labels), path, W, H)
    for writer in writers:
        writer.close()
    return out


def _assert_read_back(dataset, names: list[str], labels: list[str]) -> None:
    assert len(dataset.records) == 2
    # VOC's reader lists VOC's 20 classes when every name is one of them (cat, dog): names, not indices, must agree
    assert dataset.class_names == names or set(names) <= set(dataset.class_names)
    for record in dataset.records:
        assert (record.width, record.height) == (W, H)
        order = np.argsort(record.boxes[:, 0])
        np.testing.assert_allclose(record.boxes[order], np.array(BOXES), atol=0.5)
        assert [dataset.class_names[i] for i in record.labels[order]] == labels


@pytest.mark.parametrize("fmt,folder", [("voc", "voc"), ("coco", "coco"), ("yolo", "yolo")])
def test_single_class_round_trip(tmp_path, fmt, folder):
    out = _write(tmp_path, [fmt], ["tree"])
    _assert_read_back(open_dataset(out / folder, "train"), ["tree"], ["tree", "tree"])


@pytest.mark.parametrize("fmt,folder", [("voc", "voc"), ("coco", "coco"), ("yolo", "yolo")])
def test_classifier_names_round_trip(tmp_path, fmt, folder):
    out = _write(tmp_path, [fmt], ["cat", "dog"], labels=["dog", "cat"])
    _assert_read_back(open_dataset(out / folder, "train"), ["cat", "dog"], ["dog", "cat"])


def test_save_txt_adds_yolo_and_data_check_reads_every_format(tmp_path, capsys):
    out = _write(tmp_path, ["voc", "coco"], ["tree"], save_txt=True)
    assert (out / "yolo" / "labels" / "p0.txt").read_text().splitlines()[0].startswith("0 0.257812 0.458333 ")
    assert (out / "yolo" / "classes.txt").read_text() == "tree\n"
    for folder in ("voc", "coco", "yolo"):
        assert main(["data", "check", str(out / folder)]) == 0, folder


def test_save_conf_appends_the_score(tmp_path):
    out = tmp_path / "out"
    (writer,) = make_writers([], True, True, out, ["tree"], "run1")
    path = _photos(tmp_path)[0]
    writer.add(_entry(), path, W, H)
    writer.close()
    assert [line.split()[-1] for line in (out / "yolo" / "labels" / "p0.txt").read_text().splitlines()] == ["0.91", "0.42"]


def test_coco_results_load_in_pycocotools(tmp_path):
    coco_module = pytest.importorskip("pycocotools.coco")
    out = _write(tmp_path, ["coco", "coco-results"], ["tree"])
    ground = coco_module.COCO(str(out / "coco" / "annotations" / "instances_train.json"))
    results = ground.loadRes(str(out / "coco" / "results.json"))
    anns = results.loadAnns(results.getAnnIds(imgIds=[1]))
    assert sorted(a["score"] for a in anns) == [0.42, 0.91]
    assert sorted(tuple(a["bbox"]) for a in anns)[0] == (3.0, 4.0, 27.0, 36.0)
    data = json.loads((out / "coco" / "annotations" / "instances_train.json").read_text())
    assert [a["attributes"]["score"] for a in data["annotations"][:2]] == [0.91, 0.42]


def test_labelstudio_tasks_have_the_documented_keys(tmp_path):
    out = _write(tmp_path, ["labelstudio"], ["tree"])
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text())
    assert len(tasks) == 2
    assert tasks[0]["data"]["image"].endswith("p0.jpg")
    (prediction,) = tasks[0]["predictions"]
    assert prediction["model_version"] == "run1"
    assert prediction["score"] == 0.91
    region = prediction["result"][0]
    assert {"id", "from_name", "to_name", "type", "original_width", "original_height", "value", "score"} <= set(region)
    assert region["type"] == "rectanglelabels"
    assert (region["original_width"], region["original_height"]) == (W, H)
    value = region["value"]
    assert value["rectanglelabels"] == ["tree"]
    assert value["x"] == pytest.approx(100 * 3 / W)
    assert value["y"] == pytest.approx(100 * 4 / H)
    assert value["width"] == pytest.approx(100 * 27 / W)
    assert value["height"] == pytest.approx(100 * 36 / H)


def test_unknown_format_is_a_user_error():
    assert parse_formats("voc, coco,voc") == ["voc", "coco"]
    with pytest.raises(UserError, match="unknown annotation format.*xml"):
        parse_formats("voc,xml")
