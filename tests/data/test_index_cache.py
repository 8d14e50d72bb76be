"""The index cache holds no pickle, treats an unparseable file as stale, and takes non-UTF-8 file names."""

import json
import os
import pickle
import sys

import numpy as np
import pytest

from multibox.data.index_cache import IndexBuilder, _read, files_key, load_or_build
from multibox.data.problems import Problem, ProblemLog
from multibox.data.yolo import YOLODataset
from tests.fixtures.datasets import basic_spec, write_yolo


def small_index(path: str = "a.jpg"):
    builder = IndexBuilder()
    builder.add("a", path, 64, 48, [[1, 2, 30, 40], [5, 5, 9, 9]], [0, 1], [False, True])
    builder.add("b", "b.jpg", 10, 10, np.zeros((0, 4)), [], [])
    index = builder.build(["cat", "dog"])
    index.problems = [Problem("degenerate-box", path, "object 3", "x2 <= x1", "object dropped")]
    index.problem_counts, index.notes = {"degenerate-box": 1}, {"converted L->RGB": 2}
    return index


def test_round_trip_is_npz_and_json_without_pickle(tmp_path):
    cache = tmp_path / "voc-train-x.pkl"
    index, cached = load_or_build(cache, "k", small_index)
    assert not cached and not cache.exists()  # stored as .npz, the old .pkl name is never used
    stored = np.load(cache.with_suffix(".npz"), allow_pickle=False)  # would raise on any pickled array
    assert json.loads(stored["meta"].tobytes())["class_names"] == ["cat", "dog"]
    again, cached = load_or_build(cache, "k", lambda: pytest.fail("rebuilt a valid cache"))
    assert cached and again.image_ids == ["a", "b"] and again.problems == index.problems
    assert again.notes == index.notes and again.problem_counts == index.problem_counts
    for name in ("widths", "heights", "offsets", "boxes", "labels", "ignore"):
        assert np.array_equal(getattr(again, name), getattr(index, name))
    assert again.records()[0].ignore.tolist() == [False, True]


class Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_pickle_in_the_cache_never_runs(tmp_path):
    target = tmp_path / "payload-ran"
    cache = tmp_path / "c.npz"
    cache.write_bytes(pickle.dumps(("k", Payload(target))))
    index, cached = load_or_build(cache, "k", small_index)  # stale: rebuilt, no traceback
    assert not cached and index.image_ids == ["a", "b"] and not target.exists()
    # an .npz holding a pickled object array is refused as well
    np.savez(cache, meta=np.array([Payload(target)], dtype=object))
    assert _read(cache, "k") is None and not target.exists()


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04broken zip"])
def test_unparseable_cache_is_stale(tmp_path, content):
    cache = tmp_path / "c.npz"
    cache.write_bytes(content)
    index, cached = load_or_build(cache, "k", small_index)
    assert not cached and index.image_ids == ["a", "b"]
    assert load_or_build(cache, "k", small_index)[1]  # rewritten, valid now


def test_hand_edited_cache_whose_parts_do_not_fit_is_stale(tmp_path):
    cache = tmp_path / "c.npz"
    load_or_build(cache, "k", small_index)
    with np.load(cache) as stored:
        parts = dict(stored)
    parts["offsets"] = np.array([0, 5, 9])  # points past the 2 annotations
    np.savez(cache, **parts)
    assert _read(cache, "k") is None
    meta = json.loads(parts["meta"].tobytes())
    meta["image_ids"] = 7  # not a list
    parts["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(cache, **parts)
    assert _read(cache, "k") is None


def test_other_key_or_version_is_stale(tmp_path):
    cache = tmp_path / "c.npz"
    load_or_build(cache, "k", small_index)
    assert _read(cache, "other") is None and _read(cache, "k") is not None


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes")
def test_latin1_file_name_in_a_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "yolo"
    yaml_path = write_yolo(root, basic_spec())
    images, labels = root / "images" / "train", root / "labels" / "train"
    latin = os.fsdecode(b"caf\xe9")  # 'caf\udce9': not valid UTF-8
    os.rename(images / "img_b.jpg", images / f"{latin}.jpg")
    os.rename(labels / "img_b.txt", labels / f"{latin}.txt")
    assert files_key([images / f"{latin}.jpg"]) != files_key([images / "img_b.jpg"])
    first = YOLODataset.from_yaml(yaml_path, "train", problems=ProblemLog(echo=None))
    second = YOLODataset.from_yaml(yaml_path, "train", problems=ProblemLog(echo=None))
    assert (first.from_cache, second.from_cache) == (False, True)
    paths = [r.path for r in second.records]
    assert str(images / f"{latin}.jpg") in paths  # the name survives the JSON round trip
    record = next(r for r in second.records if r.path.endswith(f"{latin}.jpg"))
    assert record.labels.tolist() == [1] and os.path.exists(record.path)
