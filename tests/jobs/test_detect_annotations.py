"""`multibox detect --format voc,coco,labelstudio --save-txt` writes every file, and train's reader opens OUT/voc."""

from __future__ import annotations

import json

from PIL import Image

from multibox.cli import main
from multibox.data.formats import open_dataset


def test_detect_writes_annotation_files_that_read_back(tmp_path, tiny_cfg):
    from multibox.engine.trainer import train

    tiny_cfg.train.steps = 2
    model = train(tiny_cfg, tmp_path / "run")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (120, 80), (200, 10, 10)).save(photos / "a.jpg")
    out = tmp_path / "det"
    assert main(["detect", "--model", str(model), "--out", str(out), "--top-k", "3", "--device", "cpu",
                 "--format", "voc,coco,labelstudio", "--save-txt", str(photos)]) == 0
    entry = json.loads((out / "detections.json").read_text())[0]
    for path in ("voc/Annotations/a.xml", "voc/JPEGImages/a.jpg", "coco/annotations/instances_train.json",
                 "labelstudio/tasks.json", "yolo/labels/a.txt", "yolo/data.yaml"):
        assert (out / path).is_file(), path
    voc = open_dataset(out / "voc", "train")
    assert voc.class_names == ["object"]
    assert len(voc.records[0].boxes) == len(entry["boxes"])
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text())
    assert len(tasks[0]["predictions"][0]["result"]) == len(entry["boxes"])


def test_unknown_format_fails_before_detect(tmp_path, capsys):
    assert main(["detect", "--model", str(tmp_path / "none.pt"), "--format", "voc,xml", str(tmp_path)]) == 2
    assert "unknown annotation format(s) xml" in capsys.readouterr().err


def test_annotations_take_the_training_datas_one_class_name(tmp_path):
    """A localizer trained on one class ("Tree") labels its boxes with it; with several classes, `object`."""
    from fixtures.models import train_tiny

    from multibox.engine.checkpoint import load_checkpoint, save_checkpoint
    from multibox.jobs.annotate import training_class_name

    path, _ = train_tiny(tmp_path / "loc")
    state = load_checkpoint(path)
    assert len(state["class_names"]) > 1 and training_class_name(path) is None
    state["class_names"] = ["Tree"]
    save_checkpoint(tmp_path / "one.pt", state)
    assert training_class_name(tmp_path / "one.pt") == ["Tree"]
