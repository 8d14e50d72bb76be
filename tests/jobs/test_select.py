"""`multibox select` (issue 20 item 3): the informativeness measures, the ranking, the files it writes and
the Label Studio tasks of the top N."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from fixtures.models import train_tiny
from PIL import Image

import multibox.jobs.select as select_job
from multibox.cli import main
from multibox.inference.informativeness import (
    flip_disagreement,
    image_informativeness,
    mirror_boxes_back,
    threshold_uncertainty,
)


def test_flip_disagreement_is_0_when_the_views_agree_and_1_when_nothing_overlaps():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 30]])
    assert flip_disagreement(boxes, boxes.flip(0), top_n=5) == pytest.approx(0.0)
    assert flip_disagreement(boxes, boxes + 100, top_n=5) == pytest.approx(1.0)
    half = torch.tensor([[0.0, 0, 10, 5]])  # IoU 0.5 with the first box, 0 with the second
    # both ways: box 1 -> 0.5, box 2 -> 0; half -> 0.5; mean 1/3, disagreement 2/3
    assert flip_disagreement(boxes, half, top_n=5) == pytest.approx(2 / 3)
    assert flip_disagreement(boxes[:0], boxes[:0], top_n=5) == 0.0
    assert flip_disagreement(boxes, boxes[:0], top_n=5) == 1.0
    assert flip_disagreement(boxes, boxes[:1], top_n=1) == pytest.approx(0.0)  # only the top box compared


def test_mirror_boxes_back_and_threshold_uncertainty():
    mirrored = torch.tensor([[60.0, 5, 90, 20]])  # in a 100 px wide mirrored image
    assert mirror_boxes_back(mirrored, 100).tolist() == [[10.0, 5.0, 40.0, 20.0]]
    assert threshold_uncertainty(torch.tensor([0.5, 0.5]), 5) == pytest.approx(1.0)
    assert threshold_uncertainty(torch.tensor([1.0, 0.0]), 5) == pytest.approx(0.0)
    assert threshold_uncertainty(torch.tensor([0.75, 0.0]), 1) == pytest.approx(0.5)
    assert threshold_uncertainty(torch.tensor([]), 5) == 0.0


class FakeLocalizer:
    """A box around the image's brightest column, or (``fixed``) the same box whatever the image."""

    def __init__(self, fixed: bool = False) -> None:
        self.fixed = fixed

    def box(self, image: Image.Image) -> list[float]:
        if self.fixed:
            return [0.0, 0.0, 10.0, 10.0]
        centre = float(np.asarray(image.convert("L"), np.float64).sum(0).argmax()) + 0.5  # the column's centre
        return [centre - 5, 0.0, centre + 5, 10.0]

    def predict_batch(self, images, top_k=10):
        return [(torch.tensor([self.box(im)]), torch.tensor([0.9])) for im in images]


def _image(path, bright_column: int, width: int = 64, value: int = 255):
    pixels = np.zeros((32, width, 3), np.uint8)
    pixels[:, bright_column] = value
    Image.fromarray(pixels).save(path)
    return path


def test_image_informativeness_mirrors_the_second_view_back(tmp_path):
    image = Image.open(_image(tmp_path / "a.png", 20)).convert("RGB")
    consistent = image_informativeness(FakeLocalizer(), image, top_n=5)
    assert consistent["disagreement"] == pytest.approx(0.0) and consistent["boxes"].tolist() == [[15.5, 0, 25.5, 10]]
    assert consistent["uncertainty"] == pytest.approx(1 - 0.4 / 0.5)
    fooled = image_informativeness(FakeLocalizer(fixed=True), image, top_n=5)  # ignores what it sees
    assert fooled["disagreement"] == pytest.approx(1.0)


class BlindOnDim(FakeLocalizer):
    """Consistent on images with a bright column, blind (the same box whatever it sees) on dim ones: a
    property a flip keeps, so only the dim images make the two views disagree."""

    def box(self, image: Image.Image) -> list[float]:
        self.fixed = np.asarray(image).max() < 200
        return super().box(image)


def test_select_ranks_writes_csv_json_and_labelstudio_tasks_of_the_top_n(tmp_path, monkeypatch):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for name, column in [("a", 10), ("b", 50), ("c", 12), ("d", 55)]:
        _image(folder / f"{name}.png", column)
    (folder / "broken.jpg").write_bytes(b"not an image")
    monkeypatch.setattr(select_job.Localizer, "from_checkpoint", lambda model, device: FakeLocalizer(fixed=True))
    doc = select_job.select_images("model.pt", [str(folder)], tmp_path / "out", n=2, formats="labelstudio")
    # A fixed box at x 0-10 mirrors back to 54-64: images all disagree equally; ties go by path.
    assert [row["disagreement"] for row in doc["images"]] == [1.0] * 4
    assert doc["top"] == [str(folder / "a.png"), str(folder / "b.png")]
    assert [s["path"] for s in doc["skipped"]] == [str(folder / "broken.jpg")]
    assert "broken.jpg" in doc["skipped"][0]["reason"]
    rows = list(csv.DictReader((tmp_path / "out" / "select.csv").open()))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"] and rows[0]["boxes_at_conf"] == "1"
    assert json.loads((tmp_path / "out" / "select.json").read_text())["top"] == doc["top"]
    tasks = json.loads((tmp_path / "out" / "labelstudio" / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == doc["top"]
    region = tasks[0]["predictions"][0]["result"][0]
    assert region["value"]["x"] == pytest.approx(0.0) and region["value"]["width"] == pytest.approx(100 * 10 / 64)
    assert region["original_width"] == 64 and region["score"] == pytest.approx(0.9)


def test_select_puts_the_images_the_model_is_unsure_of_first(tmp_path, monkeypatch):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for name, column, value in [("a", 10, 255), ("b", 50, 120), ("c", 12, 255), ("d", 55, 120)]:
        _image(folder / f"{name}.png", column, value=value)
    monkeypatch.setattr(select_job.Localizer, "from_checkpoint", lambda model, device: BlindOnDim())
    doc = select_job.select_images("model.pt", [str(folder)], tmp_path / "out", n=2, conf=0.95)
    assert sorted(doc["top"]) == [str(folder / "b.png"), str(folder / "d.png")]  # where it is blind
    assert [row["boxes_at_conf"] for row in doc["images"]] == [0, 0, 0, 0]  # 0.9 < conf 0.95
    assert doc["images"][-1]["disagreement"] == pytest.approx(0.0)


def test_select_through_the_cli_with_a_real_checkpoint(tmp_path, capsys):
    model, _ = train_tiny(tmp_path / "run")
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for k in range(3):
        _image(folder / f"{k}.png", 10 + 20 * k)
    out = tmp_path / "sel"
    assert main(["select", "--model", str(model), "--images", str(folder), "-n", "2", "--out", str(out),
                 "--device", "cpu", "--format", "labelstudio"]) == 0
    printed = capsys.readouterr().out
    assert "the 2 image(s) to label next, by disagreement (of 3 ranked)" in printed
    assert len(json.loads((out / "labelstudio" / "tasks.json").read_text())) == 2
    assert main(["select", "--model", str(model), "--images", str(folder), "--out", str(out), "--format", "xml"]) == 2
    assert "unknown annotation format(s) xml" in capsys.readouterr().err
