"""The command line: user mistakes give one line on stderr and exit code 2, never a traceback."""

import subprocess
import sys

import pytest

from multibox.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "multibox.cli", *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("argv,fragments", [
    (["evaluate", "--model", "missing.pt", "--out", "o"], ["missing.pt", "no such checkpoint"]),
    (["detect", "--model", "missing.pt", "--out", "o", "x.jpg"], ["no such"]),
    (["train", "--out", "o", "--steps", "1", "--backbone", "vgg99"], ["unknown backbone", "vgg99"]),
    (["train", "--out", "o", "--steps", "-3"], ["--steps", "positive integer"]),
    (["train", "--out", "o", "--lr", "fast"], ["--lr", "fast"]),
    (["train", "--out", "o", "--steps", "1", "--config", "nope.yaml"], ["nope.yaml", "no such file"]),
    (["train", "--out", "o", "--steps", "1", "--data", "/no/such/dataset"], ["/no/such/dataset"]),
    (["train", "--out", "o", "--steps", "1", "--device", "tpu"], ["tpu"]),
    (["frobnicate"], ["invalid choice"]),
])
def test_user_mistakes_exit_2_with_one_line(argv, fragments, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit from inside parse_args
        code = exc.code
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, *fragments)


def test_bad_yaml_names_the_line(tmp_path, capsys):
    bad = tmp_path / "cfg.yaml"
    bad.write_text("train:\n  lr: 0.1\n  steps: [1\n")
    assert main(["train", "--out", str(tmp_path / "o"), "--config", str(bad)]) == 2
    assert_one_line_error(capsys.readouterr().err, "cfg.yaml", "line")
    bad.write_text("train:\n  learning_rate: 0.1\n")
    assert main(["train", "--out", str(tmp_path / "o"), "--config", str(bad)]) == 2
    assert_one_line_error(capsys.readouterr().err, "unknown key 'learning_rate'")


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    proc = run_cli("evaluate", "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "no such checkpoint")


def test_detect_on_a_directory_writes_json_and_images(tmp_path, tiny_cfg):
    from PIL import Image

    from multibox.engine.trainer import train

    tiny_cfg.train.steps = 2
    model = train(tiny_cfg, tmp_path / "run")
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (120, 80), (200, 10, 10)).save(images / "a.jpg")
    Image.new("L", (50, 90), 128).save(images / "b.png")
    assert main(["detect", "--model", str(model), "--out", str(tmp_path / "det"), "--top-k", "3", "--device", "cpu", str(images)]) == 0
    import json

    entries = json.loads((tmp_path / "det" / "detections.json").read_text())
    assert [(e["width"], e["height"]) for e in entries] == [(120, 80), (50, 90)]
    for e in entries:
        assert len(e["boxes"]) == len(e["scores"]) <= 3
        for x1, y1, x2, y2 in e["boxes"]:
            assert 0 <= x1 <= x2 <= e["width"] and 0 <= y1 <= y2 <= e["height"]
    assert sorted(p.name for p in (tmp_path / "det" / "images").iterdir()) == ["a.jpg", "b.jpg"]
