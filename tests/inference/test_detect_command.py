"""`multibox detect` through multibox.cli.main: --conf / --iou / --max-det, no degenerate box, scores
with 4 significant digits, one labelled entry per box, an unreadable image skipped, same-named
inputs kept apart."""

import json

import pytest
import torch
from fixtures.models import tiny_config
from PIL import Image

from multibox.boxes import clip_boxes, crop_to_image
from multibox.cli import main
from multibox.engine.trainer import train
from multibox.inference.localizer import Localizer
from multibox.inference.windows import window_inputs
from multibox.jobs.train import train_classifier


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(localizer checkpoint, classifier checkpoint) of 1-step tiny networks."""
    out = tmp_path_factory.mktemp("models")
    cfg = tiny_config()
    cfg.train.steps = 1
    return train(cfg, out / "loc"), train_classifier(cfg, out / "cls")


def run(argv, capsys):
    """(exit code, stderr) of `multibox ARGV`, SystemExit included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def strip_image(path):
    """A 160 x 16 strip: seen whole, it is the top tenth of a padded square, so most of the
    localizer's boxes fall in the padding and truncate to nothing."""
    Image.frombytes("RGB", (160, 16), bytes(range(256)) * 30).save(path)


def test_the_strip_gives_degenerate_candidates(models, tmp_path):
    strip_image(tmp_path / "s.png")
    loc = Localizer.from_checkpoint(models[0], "cpu", windows="whole")
    image = Image.open(tmp_path / "s.png").convert("RGB")
    windows = loc.image_windows(image.width, image.height)
    with torch.no_grad():
        pred = loc.model(window_inputs(image, windows, loc.image_size))["pred_boxes"]
    boxes = clip_boxes(crop_to_image(pred, windows), 160.0, 16.0)
    wh = boxes[..., 2:] - boxes[..., :2]
    assert ((wh < 1).any(-1)).sum() > 0  # what the filter below has to remove


def test_detect_options_and_no_degenerate_box(models, tmp_path, capsys):
    strip_image(tmp_path / "s.png")
    Image.new("RGB", (90, 60), (30, 160, 40)).save(tmp_path / "g.png")
    out = tmp_path / "det"
    code, err = run(["detect", "--model", str(models[0]), "--out", str(out), "--device", "cpu", "--windows", "whole",
                     "--top-k", "8", "--max-det", "3", "--iou", "0.3", str(tmp_path / "s.png"), str(tmp_path / "g.png")],
                    capsys)
    assert code == 0, err
    entries = json.loads((out / "detections.json").read_text())
    assert [e["path"] for e in entries] == [str(tmp_path / "s.png"), str(tmp_path / "g.png")]
    for e in entries:
        assert 0 < len(e["boxes"]) == len(e["scores"]) <= 3  # --max-det
        for x1, y1, x2, y2 in e["boxes"]:
            assert x2 - x1 >= 1 and y2 - y1 >= 1 and 0 <= x1 and 0 <= y1 and x2 <= e["width"] and y2 <= e["height"]
        assert all(float(f"{s:.4g}") == s and s > 0 for s in e["scores"])  # 4 significant digits, none 0.0
        assert e["scores"] == sorted(e["scores"], reverse=True)
    low = min(s for e in entries for s in e["scores"])
    code, _ = run(["detect", "--model", str(models[0]), "--out", str(tmp_path / "conf"), "--device", "cpu",
                   "--conf", f"{low * 1.0001:.6g}", str(tmp_path / "s.png"), str(tmp_path / "g.png")], capsys)
    kept = [s for e in json.loads((tmp_path / "conf" / "detections.json").read_text()) for s in e["scores"]]
    assert code == 0 and all(s >= low for s in kept)


def test_detect_with_a_classifier_gives_each_box_once(models, tmp_path, capsys):
    Image.new("RGB", (90, 60), (200, 40, 40)).save(tmp_path / "a.png")
    code, err = run(["detect", "--model", str(models[0]), "--classifier", str(models[1]), "--out", str(tmp_path / "d"),
                     "--device", "cpu", "--top-k", "4", str(tmp_path / "a.png")], capsys)
    assert code == 0, err
    [e] = json.loads((tmp_path / "d" / "detections.json").read_text())
    n = len(e["boxes"])
    assert 0 < n <= 4 and len(e["labels"]) == len(e["label_ids"]) == len(e["label_scores"]) == len(e["scores"]) == n
    assert len({tuple(b) for b in e["boxes"]}) == n  # no box repeated once per class
    assert all(0 < p <= 1 for p in e["label_scores"]) and all(s <= p for s, p in zip(e["scores"], e["label_scores"]))
    assert (tmp_path / "d" / e["drawing"]).is_file()


def test_a_corrupt_image_is_named_and_skipped(models, tmp_path, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (64, 48), (10, 10, 200)).save(images / "a.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated, not a JPEG")
    Image.new("RGB", (40, 40), (200, 200, 10)).save(images / "c.jpg")
    code, err = run(["detect", "--model", str(models[0]), "--out", str(tmp_path / "d"), "--device", "cpu", str(images)],
                    capsys)
    assert code == 0
    named, summary = err.strip().splitlines()  # the file named as it is met, then one line at the end
    assert "broken.jpg" in named and "Traceback" not in err
    assert summary.startswith("1 of 3 image(s) could not be read") and "skipped.json" in summary
    entries = json.loads((tmp_path / "d" / "detections.json").read_text())
    assert [e["path"].rsplit("/", 1)[-1] for e in entries] == ["a.jpg", "c.jpg"]
    [skipped] = json.loads((tmp_path / "d" / "skipped.json").read_text())
    assert skipped["path"] == str(images / "broken.jpg") and "not a readable image" in skipped["reason"]
    (images / "a.jpg").write_bytes(b"junk")
    (images / "c.jpg").write_bytes(b"junk")
    code, err = run(["detect", "--model", str(models[0]), "--out", str(tmp_path / "e"), "--device", "cpu", str(images)],
                    capsys)
    assert code == 2 and "none of the 3 image(s) could be read" in err.strip().splitlines()[-1]


def test_same_file_names_in_two_folders_keep_both_drawings(models, tmp_path, capsys):
    for folder, colour in (("a", (250, 0, 0)), ("b", (0, 0, 250))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (50, 40), colour).save(tmp_path / folder / "x.jpg")
    Image.new("RGB", (50, 40)).save(tmp_path / "a" / "x.png")  # same stem, same folder
    code, err = run(["detect", "--model", str(models[0]), "--out", str(tmp_path / "d"), "--device", "cpu",
                     str(tmp_path / "a"), str(tmp_path / "b")], capsys)
    assert code == 0, err
    entries = json.loads((tmp_path / "d" / "detections.json").read_text())
    drawings = [e["drawing"] for e in entries]
    assert len(set(drawings)) == 3 and all((tmp_path / "d" / d).is_file() for d in drawings)
    assert sorted(p.name for p in (tmp_path / "d" / "images").iterdir()) == ["a_x.jpg", "a_x_2.jpg", "b_x.jpg"]
    assert {e["path"] for e in entries} == {str(tmp_path / "a" / "x.jpg"), str(tmp_path / "a" / "x.png"),
                                            str(tmp_path / "b" / "x.jpg")}


@pytest.mark.parametrize("extra,fragment", [(["--conf", "1.5"], "--conf"), (["--iou", "0"], "--iou"),
                                            (["--max-det", "0"], "--max-det")])
def test_bad_prediction_flags_exit_2_with_one_line(extra, fragment, capsys, tmp_path):
    code, err = run(["detect", "--model", "m.pt", "--out", str(tmp_path), *extra, "x.jpg"], capsys)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_help_says_how_top_k_and_max_det_differ(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "before the classifier" in text and "final detections per image" in text and "--conf" in text


def test_detect_shows_a_progress_bar_with_a_count(models, tmp_path, capsys, monkeypatch):
    import multibox.jobs.detect as job

    real = job.tqdm
    monkeypatch.setattr(job, "tqdm", lambda *a, **k: real(*a, **(k | {"disable": False})))  # as on a terminal
    for i in range(3):
        Image.new("RGB", (40, 30), (60 * i, 90, 30)).save(tmp_path / f"{i}.png")
    code, err = run(["detect", "--model", str(models[0]), "--out", str(tmp_path / "d"), "--device", "cpu",
                     *(str(tmp_path / f"{i}.png") for i in range(3))],
                    capsys)
    assert code == 0 and "3/3" in err and "image" in err
