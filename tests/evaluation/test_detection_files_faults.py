"""Detection files facing bad input (issue 12): NaN scores, a width given as text, deep nesting and
entries that are not objects are one-line errors naming the file and the entry; an image id shared by
two records does not stop the path from matching; detections.json is written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.datasets import basic_spec, write_voc

from multibox.cli import main
from multibox.data import DetectionDataset
from multibox.data.dataset import ImageRecord
from multibox.data.problems import ProblemLog
from multibox.data.voc import VOCDataset
from multibox.errors import UserError
from multibox.evaluation.detection_files import read_detections, write_detections


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def voc(tmp_path) -> Path:
    return write_voc(tmp_path / "voc", basic_spec())


def _dataset(root: Path) -> VOCDataset:
    return VOCDataset(root, "train", cache=False, problems=ProblemLog(echo=None))


def _entry(image_id: str, width=64, height=48, scores=(0.9, 0.5), boxes=((1, 2, 30, 40), (5, 5, 20, 20))) -> dict:
    return {"image_id": image_id, "path": f"/elsewhere/{image_id}.jpg", "width": width, "height": height,
            "boxes": [list(b) for b in boxes], "scores": list(scores)}


def _write(tmp_path: Path, entries, name: str = "d.json") -> Path:
    path = tmp_path / name
    path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    return path


@pytest.mark.parametrize("field,value,message", [
    ("scores", [float("nan"), 0.5], "entry 1: scores [nan, 0.5] holds NaN or infinity"),
    ("boxes", [[1, 2, float("inf"), 4], [1, 1, 5, 5]], "entry 1: box [1, 2, inf, 4] holds NaN or infinity"),
    ("width", "64", 'entry 1: width "64" is not a positive number'),
    ("height", 0, "entry 1: height 0 is not a positive number"),
    ("height", None, "entry 1: height null is not a positive number"),
    ("boxes", "1,2,3,4", "entry 1: boxes 1,2,3,4 is not a list of [x1, y1, x2, y2]"),
    ("path", 7, "entry 1: path 7 is not text"),
])
def test_bad_values_are_one_line_errors_naming_the_file_and_the_entry(voc, tmp_path, field, value, message):
    entries = [_entry("img_a"), _entry("img_b", 50, 70)]
    entries[1][field] = value
    path = _write(tmp_path, entries)  # json.dumps writes NaN / Infinity, as Python's json reads them
    with pytest.raises(UserError) as error:
        read_detections(path, _dataset(voc))
    assert str(error.value) == f"{path}: {message}"


def test_coco_results_with_a_nan_score_name_the_entry(voc, tmp_path):
    path = _write(tmp_path, [{"image_id": "img_a", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
                             {"image_id": "img_b", "category_id": 1, "bbox": [1, 2, 3, 4], "score": float("nan")}])
    with pytest.raises(UserError, match=r"d.json: entry 1: score \[nan\] holds NaN or infinity$"):
        read_detections(path, _dataset(voc))


@pytest.mark.parametrize("entry,message", [
    ({"image_id": "img_a", "boxes": [[1, 1, 5, 1e300]], "scores": [1]}, "entry 0: a box or score does not fit in 32-bit floats"),
    ({"image_id": "img_a", "boxes": [[1, 1, 5, 5]], "scores": [10**400]}, "entry 0: scores [1000"),
    ({"image_id": "img_a", "bbox": [1e308, 1, 1e308, 5], "score": 1, "category_id": 1},
     "entry 0: bbox or score does not fit in 32-bit floats"),
])
def test_numbers_too_large_for_float32_are_one_line_errors(voc, tmp_path, entry, message):
    path = _write(tmp_path, [entry])
    with pytest.raises(UserError) as error:
        read_detections(path, _dataset(voc))
    assert str(error.value).startswith(f"{path}: {message}")


def test_labels_out_of_range_count_for_no_class(voc, tmp_path, capsys):
    entries = [{"image_id": "img_a", "boxes": [[1, 1, 5, 5]] * 3, "scores": [0.9, 0.8, 0.7], "labels": [10**30, -1, 2]}]
    loaded = read_detections(_write(tmp_path, entries), _dataset(voc))
    assert loaded.detections[0]["labels"].tolist() == [-1, -1, 2]
    assert "2 box(es) have a label the dataset does not know" in capsys.readouterr().err


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply to be a detections file"),
    ('[{"image_id": "img_a", "boxes": [], "scores": []}, 3]', "entry 1: 3 is not an object"),
])
def test_deep_nesting_and_entries_that_are_not_objects(voc, tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as error:
        read_detections(path, _dataset(voc))
    assert str(error.value) == f"{path}: {message}"


def test_cli_names_the_flag_and_exits_2_without_a_traceback(voc, tmp_path, capsys):
    entries = [_entry("img_a", scores=(float("nan"), 0.5))]
    path = _write(tmp_path, entries)
    code = main(["evaluate", "--detections", str(path), "--data", str(voc), "--split", "train",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.endswith(f"--detections {path}: entry 0: scores [nan, 0.5] holds NaN or infinity")


class _TwoRecordsOneId(DetectionDataset):
    """Two images whose records share an image id (e.g. two folders' "0001"): only the path tells them apart."""

    def __init__(self, tmp_path: Path):
        self.class_names, self.name = ["thing"], "shared-ids"
        self.records = [ImageRecord("0001", str(tmp_path / f"{folder}" / "0001.jpg"), 100, 100,
                                    [[10, 10, 50, 50]], [0], [False]) for folder in ("a", "b")]

    def load_image(self, index, target_size=None):
        raise NotImplementedError


def test_an_image_id_shared_by_two_records_falls_back_to_the_path(tmp_path):
    dataset = _TwoRecordsOneId(tmp_path)
    entries = [{"image_id": "0001", "path": dataset.records[1].path, "width": 100, "height": 100,
                "boxes": [[10, 10, 50, 50]], "scores": [0.9]}]
    loaded = read_detections(_write(tmp_path, entries), dataset)
    assert loaded.unmatched == 0  # before: "0001" is ambiguous, so the entry matched nothing
    assert [len(d["scores"]) for d in loaded.detections] == [0, 1]
    np.testing.assert_array_equal(loaded.detections[1]["boxes"].numpy(), [[10, 10, 50, 50]])


def test_an_entry_with_only_an_ambiguous_id_matches_nothing(tmp_path):
    dataset = _TwoRecordsOneId(tmp_path)
    entries = [{"image_id": "0001", "boxes": [[1, 1, 5, 5]], "scores": [0.9]},
               {"path": dataset.records[0].path, "boxes": [[1, 1, 5, 5]], "scores": [0.8]}]
    loaded = read_detections(_write(tmp_path, entries), dataset)
    assert loaded.unmatched == 1 and [len(d["scores"]) for d in loaded.detections] == [1, 0]


def test_write_detections_is_atomic_and_reads_back(voc, tmp_path):
    dataset = _dataset(voc)
    detections = [{"boxes": torch.tensor([[1.0, 2.0, 3.5, 4.25]]), "scores": torch.tensor([0.75])}, None,
                  {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}]
    out = write_detections(tmp_path / "run" / "detections.json", dataset, detections)
    assert sorted(p.name for p in out.parent.iterdir()) == ["detections.json"]  # no temporary file left
    loaded = read_detections(out, dataset)
    assert [len(d["scores"]) for d in loaded.detections] == [1, 0, 0] and math.isclose(loaded.detections[0]["scores"][0], 0.75)
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(UserError, match="folder.json: cannot write"):
        write_detections(tmp_path / "folder.json", dataset, detections)
