"""`multibox detect` streams: an interrupted run keeps its work and --resume completes it to what an
uninterrupted run gives; the JSON Lines file survives kill -9; a folder holding a run is refused without
--resume / --exist-ok; memory does not grow with the number of images; unreadable files in skipped.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import weakref
from pathlib import Path

import pytest
import torch
from fixtures.models import tiny_config
from PIL import Image

import multibox.jobs.detect as job
import multibox.jobs.detect_stream as streaming
from multibox.engine.trainer import train
from tests.inference.test_detect_command import run  # (exit code, stderr) of `multibox ARGV`


def colour_images(folder: Path, count: int, side: int = 24) -> list[Path]:
    """``count`` small PNGs of distinct colours, named 000.png, 001.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(folder / f"{i:03d}.png")
        Image.new("RGB", (side + i % 5, side), (7 * i % 256, 11 * i % 256, 90)).save(paths[-1])
    return paths


def fake_det(image: Image.Image) -> dict:
    """Detections that depend only on the image: two boxes, the second scoring 0.1."""
    red = image.getpixel((0, 0))[0] / 255
    return {"boxes": torch.tensor([[0.0, 0.0, image.width / 2, image.height / 2], [1.0, 1.0, 9.0, 9.0]]),
            "scores": torch.tensor([0.5 + red / 4, 0.1])}


class FakePredictor:
    """A predictor of :func:`fake_det`; raises KeyboardInterrupt at call ``stop_at`` (counted from 1)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls, self.stop_at = 0, stop_at

    def __call__(self, images: list[Image.Image]) -> list[dict]:
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return [fake_det(im) for im in images]


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A model file (its bytes are only hashed) whose predictor is a FakePredictor; returns (path, setter)."""
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    predictor = {"now": FakePredictor()}
    monkeypatch.setattr(job, "detection_predictor", lambda *a, **k: (predictor["now"], None))
    return model, lambda p: predictor.update(now=p)


def detect_argv(model, out, *extra):
    return ["detect", "--model", str(model), "--out", str(out), "--device", "cpu", "--batch", "2", *extra]


def test_interrupted_detect_resumed_equals_an_uninterrupted_run(tmp_path, fake_model, capsys):
    model, use = fake_model
    images = colour_images(tmp_path / "imgs", 9)
    code, err = run(detect_argv(model, tmp_path / "whole", "--format", "voc", str(tmp_path / "imgs")), capsys)
    assert code == 0, err
    use(FakePredictor(stop_at=3))  # two batches of 2 written, then Ctrl-C
    out = tmp_path / "cut"
    code, err = run(detect_argv(model, out, "--format", "voc", str(tmp_path / "imgs")), capsys)
    assert code == 130 and len(err.strip().splitlines()) == 1 and "--resume" in err and "4 image(s)" in err
    assert len((out / "detections.jsonl").read_text().splitlines()) == 4 and not (out / "detections.json").exists()
    use(FakePredictor())
    code, err = run(detect_argv(model, out, "--format", "voc", "--resume", str(tmp_path / "imgs")), capsys)
    assert code == 0, err
    whole = json.loads((tmp_path / "whole" / "detections.json").read_text())
    assert json.loads((out / "detections.json").read_text()) == whole
    assert [e["path"] for e in whole] == [str(p) for p in images]
    assert all((out / e["drawing"]).is_file() for e in whole)
    ids = (out / "voc" / "ImageSets" / "Main" / "train.txt").read_text()  # the writers saw the first 4 again
    assert ids == (tmp_path / "whole" / "voc" / "ImageSets" / "Main" / "train.txt").read_text()
    assert ids.split() == [p.stem for p in images]


def test_a_folder_holding_a_run_needs_resume_or_exist_ok(tmp_path, fake_model, capsys):
    model, _ = fake_model
    colour_images(tmp_path / "imgs", 3)
    out = tmp_path / "d"
    code, err = run(detect_argv(model, out, "--resume", str(tmp_path / "imgs")), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "drop --resume" in err
    assert run(detect_argv(model, out, str(tmp_path / "imgs")), capsys)[0] == 0
    code, err = run(detect_argv(model, out, str(tmp_path / "imgs")), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--resume continues it" in err and "--exist-ok starts over" in err and "3 image(s)" in err
    code, err = run(detect_argv(model, out, "--resume", "--top-k", "5", str(tmp_path / "imgs")), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "top_k 10 -> 5" in err
    model.write_bytes(b"retrained")
    code, err = run(detect_argv(model, out, "--resume", str(tmp_path / "imgs")), capsys)
    assert code == 2 and "sha256" in err
    code, err = run(detect_argv(model, out, "--exist-ok", str(tmp_path / "imgs")), capsys)
    assert code == 0, err
    assert len((out / "detections.jsonl").read_text().splitlines()) == 3  # started over, not appended


def test_a_mended_file_takes_its_place_in_input_order(tmp_path, fake_model, capsys):
    model, _ = fake_model
    paths = colour_images(tmp_path / "imgs", 3)
    paths[1].write_bytes(b"not an image")
    out = tmp_path / "d"
    code, err = run(detect_argv(model, out, "--no-save", str(tmp_path / "imgs")), capsys)
    assert code == 0 and "1 of 3 image(s) could not be read" in err
    assert [s["path"] for s in json.loads((out / "skipped.json").read_text())] == [str(paths[1])]
    Image.new("RGB", (20, 20), (1, 2, 3)).save(paths[1], format="PNG")
    code, err = run(detect_argv(model, out, "--no-save", "--resume", str(tmp_path / "imgs")), capsys)
    assert code == 0, err
    text = (out / "detections.json").read_text()
    entries = json.loads(text)
    assert [e["path"] for e in entries] == [str(p) for p in paths]  # input order, not the order run
    assert [json.loads(line)["path"] for line in (out / "detections.jsonl").read_text().splitlines()] == \
        [str(paths[0]), str(paths[2]), str(paths[1])]
    lines = text.splitlines()  # one entry a line, as the JSONL holds it
    assert lines[0] == "[" and lines[-1] == "]" and [json.loads(line.rstrip(",")) for line in lines[1:-1]] == entries
    assert not (out / "skipped.json").exists()
    assert all("drawing" not in e for e in entries) and not (out / "images").exists()
    paths[0].unlink()  # a file gone from the folder: its line stays in the JSONL, said at the end
    code, err = run(detect_argv(model, out, "--no-save", "--resume", str(tmp_path / "imgs")), capsys)
    assert code == 0 and "1 line(s) of" in err and "no longer among the inputs" in err
    assert [e["path"] for e in json.loads((out / "detections.json").read_text())] == [str(p) for p in paths[1:]]


def test_the_drawing_shows_boxes_above_draw_conf_the_json_keeps_conf(tmp_path, fake_model, capsys):
    model, _ = fake_model
    [path] = colour_images(tmp_path / "imgs", 1, side=40)
    code, err = run(detect_argv(model, tmp_path / "d", str(path)), capsys)
    assert code == 0, err
    [entry] = json.loads((tmp_path / "d" / "detections.json").read_text())
    assert entry["scores"][1] == 0.1  # below the drawing threshold, kept in the file (--conf 0)
    drawing = Image.open(tmp_path / "d" / entry["drawing"]).convert("RGB")
    assert drawing.size == (640, 640)  # 40 px upscaled to be seen
    factor = 640 / 40
    box = [round(v * factor) for v in entry["boxes"][0]]
    red = (255, 40, 40)  # the first class colour; JPEG moves a pixel by a few levels

    def near_red(xy) -> bool:
        return max(abs(a - b) for a, b in zip(drawing.getpixel(xy), red)) <= 40

    assert entry["drawing"].endswith(".jpg")
    assert near_red((box[0] + 1, (box[1] + box[3]) // 2))  # the 0.5+ box: drawn
    low = [round(v * factor) for v in entry["boxes"][1]]
    assert not near_red((low[2], (low[1] + low[3]) // 2 + 20))  # the 0.1 box: not drawn


# ---- kill -9 of a real detect (a tiny checkpoint) ---------------------------------------------------------

SLOW_DETECT = """
import sys, time
import multibox.jobs.detect as job
real = job.detection_predictor
def slow(*args, **kwargs):
    predict, names = real(*args, **kwargs)
    return (lambda images: (time.sleep(0.25), predict(images))[1]), names
job.detection_predictor = slow
from multibox.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    cfg = tiny_config()
    cfg.train.steps = 1
    return train(cfg, tmp_path_factory.mktemp("tiny") / "loc")


def lines_of(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_the_jsonl_is_valid_after_kill_9_and_resume_completes_it(tiny_model, tmp_path, capsys):
    images = colour_images(tmp_path / "imgs", 16, side=48)
    argv = ["detect", "--model", str(tiny_model), "--device", "cpu", "--batch", "1", "--no-save", "--windows",
            "whole", str(tmp_path / "imgs")]
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), *sys.path]))
    child = subprocess.Popen([sys.executable, "-c", SLOW_DETECT, *argv, "--out", str(out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while lines_of(out / "detections.jsonl") < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()
    raw = (out / "detections.jsonl").read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1].decode().splitlines()
    assert 3 <= len(complete) < len(images) and not (out / "detections.json").exists()
    assert [json.loads(line)["path"] for line in complete] == [str(p) for p in images[: len(complete)]]
    with open(out / "detections.jsonl", "ab") as log:
        log.write(b'{"path": "' + str(images[len(complete)]).encode())  # a line cut by the kill
    code, err = run([*argv, "--out", str(out), "--resume"], capsys)
    assert code == 0, err
    code, err = run([*argv, "--out", str(tmp_path / "whole")], capsys)
    assert code == 0, err
    resumed = json.loads((out / "detections.json").read_text())
    whole = json.loads((tmp_path / "whole" / "detections.json").read_text())
    assert [e["path"] for e in resumed] == [e["path"] for e in whole] == [str(p) for p in images]
    for a, b in zip(resumed, whole):
        assert len(a["boxes"]) == len(b["boxes"])
        assert torch.allclose(torch.tensor(a["boxes"]), torch.tensor(b["boxes"]), atol=0.02)
        assert torch.allclose(torch.tensor(a["scores"]), torch.tensor(b["scores"]), rtol=1e-3)


# ---- memory: bounded and flat in the number of images ---------------------------------------------------


def peak_of_stream(paths: list[Path], out: Path, monkeypatch, workers: int = 2) -> tuple[int, int]:
    """(most decoded images alive at once, tracemalloc peak bytes) of streaming ``paths`` through a slow
    fake network, 4 images a batch, ``workers`` decoding threads."""
    live, lock = [0], threading.Lock()  # decoded images not yet freed (PIL images cannot go in a WeakSet)
    real_open = streaming.open_image

    def freed() -> None:
        with lock:
            live[0] -= 1

    def tracked(path):
        image = real_open(path)
        with lock:
            live[0] += 1
        weakref.finalize(image, freed)
        return image

    most = [0]

    def slow_predict(images):
        most[0] = max(most[0], live[0])
        time.sleep(0.002)  # the network is the slow part: decoding runs as far ahead as it may
        return [fake_det(im) for im in images]

    monkeypatch.setattr(streaming, "open_image", tracked)
    todo = list(enumerate(paths))
    out.mkdir()
    with open(os.devnull, "w") as log:
        sink = streaming.Sink(out, log, None, [p.stem for p in paths], save=False)
        tracemalloc.start()
        try:
            assert streaming.stream(todo, slow_predict, sink, batch_size=4, workers=workers) == []
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert sink.written == len(paths)
    return most[0], peak


def test_memory_of_detect_does_not_grow_with_the_folder(tmp_path, monkeypatch):
    paths = colour_images(tmp_path / "imgs", 500, side=16)
    few_images, few_bytes = peak_of_stream(paths[:50], tmp_path / "50", monkeypatch)
    many_images, many_bytes = peak_of_stream(paths, tmp_path / "500", monkeypatch)
    bound = 5 * 4 + 1  # read ahead 2 batches + the batch in hand + 2 batches waiting to be written + 1
    assert 4 <= few_images <= bound and 4 <= many_images <= bound
    tracemalloc.start()
    held = [(image, fake_det(image)) for image in map(streaming.open_image, paths[:50])]
    per_image = tracemalloc.get_traced_memory()[0] / len(held)  # what keeping an image and its boxes costs
    tracemalloc.stop()
    # 450 images more: the Python heap's peak grows by less than keeping 45 of them would (the pixels,
    # outside tracemalloc's view, are bounded by the count above)
    assert many_bytes - few_bytes < 45 * per_image, (few_bytes, many_bytes, per_image)


def test_decoding_in_turn_gives_the_same_lines_as_decoding_threads(tmp_path, monkeypatch):
    """workers=0 (detect's default on a CPU): every image decoded on the calling thread when asked for,
    the same JSONL in the same order as with decoding threads, an unreadable file skipped alike, and at
    most the batch in hand plus those waiting to be written alive at once."""
    paths = colour_images(tmp_path / "imgs", 9, side=16)
    paths[4].write_bytes(b"not an image")
    lines = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        out.mkdir()
        with open(out / "d.jsonl", "w") as log:
            sink = streaming.Sink(out, log, None, [p.stem for p in paths], save=False)
            skipped = streaming.stream(list(enumerate(paths)), lambda ims: [fake_det(im) for im in ims], sink,
                                       batch_size=2, workers=workers)
        assert [s["path"] for s in skipped] == [str(paths[4])]
        lines[workers] = (out / "d.jsonl").read_text().splitlines()
    assert len(lines[0]) == 8 and lines[0] == lines[2]
    most, _ = peak_of_stream(colour_images(tmp_path / "more", 40, side=16), tmp_path / "in_turn", monkeypatch,
                             workers=0)
    assert 4 <= most <= 3 * 4 + 1  # the batch in hand + 2 batches waiting to be written + 1


def test_a_staged_predict_gives_the_same_lines_with_its_network_in_a_thread(tmp_path):
    """Staged (an exported model on a CPU): batch i's network runs in its own thread while batch i - 1 is
    finished; the JSONL is the one predict-in-turn writes, unreadable files skipped alike, every network
    call off the calling thread."""
    paths = colour_images(tmp_path / "imgs", 11, side=16)
    paths[3].write_bytes(b"not an image")
    threads = []

    def network(state):
        threads.append(threading.current_thread().name)
        return [fake_det(im) for im in state]

    staged = streaming.Staged(prepare=list, network=network, finish=lambda state, outputs: outputs)
    lines = {}
    for name, predict in (("in turn", lambda ims: [fake_det(im) for im in ims]), ("staged", staged)):
        out = tmp_path / name.replace(" ", "_")
        out.mkdir()
        with open(out / "d.jsonl", "w") as log:
            sink = streaming.Sink(out, log, None, [p.stem for p in paths], save=False)
            skipped = streaming.stream(list(enumerate(paths)), predict, sink, batch_size=3, workers=0)
        assert [s["path"] for s in skipped] == [str(paths[3])]
        lines[name] = (out / "d.jsonl").read_text().splitlines()
    assert len(lines["staged"]) == 10 and lines["staged"] == lines["in turn"]
    assert len(threads) == 4 and all(t.startswith("detect-network") for t in threads)
